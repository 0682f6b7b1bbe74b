/* The payload pattern of `memcast pub --size` that `memcast sub --verify` checks. */
#ifndef MEMCAST_TOOLS_PATTERN_H
#define MEMCAST_TOOLS_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Byte i of the payload with sequence number seq: seq * 151 + i * 13 + (i >> 10), mod 256. */
unsigned char mc_cli_pattern(uint64_t seq, size_t i);

/* Writes the pattern of seq into buf[0..size). */
void mc_cli_pattern_fill(void *buf, size_t size, uint64_t seq);

/* Whether buf[0..size) holds exactly the pattern of seq. */
bool mc_cli_pattern_intact(const void *buf, size_t size, uint64_t seq);

#endif
