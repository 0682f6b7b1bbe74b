/*
 * A large message goes into its slot with non-temporal stores: memcpy would leave it in
 * the publisher's cache, and a subscriber on another core would then take it out line by
 * line, which in the development VM ran at 5-6 GB/s; read from memory, with the
 * prefetchers' help, a 1 MiB message came 2.5 times faster (doc/performance.md). Ordinary
 * stores need no fence before the release store that commits a slot; these do.
 */
#include "copy.h"

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void mc_shm_copy_uncached(void *dst, const void *src, size_t size)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    size_t done = 0;
#if defined(__SSE2__)
    size_t head = (size_t)(-(uintptr_t)d & 15); /* the stores need 16-byte alignment */
    if (head > size)
        head = size;
    memcpy(d, s, head);
    for (done = head; done + 64 <= size; done += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + done));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + done + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + done + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + done + 48));
        _mm_stream_si128((__m128i *)(void *)(d + done), a);
        _mm_stream_si128((__m128i *)(void *)(d + done + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + done + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + done + 48), e);
    }
    _mm_sfence();
#endif
    memcpy(d + done, s + done, size - done);
}
