/*
 * Reads the defined dynamic symbols of a shared object straight from its ELF file (what
 * `nm -D --defined-only` lists), so that the abi suite needs no binutils on the machine
 * of a plugin author. Only objects of this machine's class and byte order are read: a
 * plugin for another machine would not load here anyway.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conformance.h"

#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Ehdr elf_ehdr;
typedef Elf64_Shdr elf_shdr;
typedef Elf64_Sym elf_sym;
#define ELF_CLASS_HERE ELFCLASS64
#define SYM_BIND       ELF64_ST_BIND
#define SYM_TYPE       ELF64_ST_TYPE
#else
typedef Elf32_Ehdr elf_ehdr;
typedef Elf32_Shdr elf_shdr;
typedef Elf32_Sym elf_sym;
#define ELF_CLASS_HERE ELFCLASS32
#define SYM_BIND       ELF32_ST_BIND
#define SYM_TYPE       ELF32_ST_TYPE
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ELF_DATA_HERE ELFDATA2LSB
#else
#define ELF_DATA_HERE ELFDATA2MSB
#endif

typedef struct elf_file {
    const unsigned char *bytes;
    size_t size;
} elf_file;

/* A pointer to [offset, offset + len) of the file, or NULL when that is outside it. */
static const void *span(const elf_file *f, uint64_t offset, uint64_t len)
{
    if (offset > f->size || len > f->size - offset)
        return NULL;
    return f->bytes + offset;
}

static int fail(char *why, size_t size, const char *path, const char *what)
{
    snprintf(why, size, "%s: %s", path, what);
    return -1;
}

static const elf_shdr *section(const elf_file *f, const elf_ehdr *eh, size_t index)
{
    if (index >= eh->e_shnum || eh->e_shentsize != sizeof(elf_shdr))
        return NULL;
    return span(f, eh->e_shoff + (uint64_t)index * sizeof(elf_shdr), sizeof(elf_shdr));
}

static bool exported(const elf_sym *s)
{
    int bind = SYM_BIND(s->st_info);
    int type = SYM_TYPE(s->st_info);
    return s->st_shndx != SHN_UNDEF && s->st_name != 0 &&
           (bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE) &&
           type != STT_SECTION && type != STT_FILE && s->st_shndx != SHN_ABS;
}

static int walk_dynsym(const elf_file *f, const elf_ehdr *eh, const elf_shdr *dynsym,
                       void (*fn)(void *user, const char *name), void *user, char *why,
                       size_t why_size, const char *path)
{
    const elf_shdr *strtab = section(f, eh, dynsym->sh_link);
    if (strtab == NULL || dynsym->sh_entsize != sizeof(elf_sym))
        return fail(why, why_size, path, "malformed .dynsym section");
    const char *strings = span(f, strtab->sh_offset, strtab->sh_size);
    const elf_sym *syms = span(f, dynsym->sh_offset, dynsym->sh_size);
    if (strings == NULL || syms == NULL || strtab->sh_size == 0)
        return fail(why, why_size, path, ".dynsym or its strings lie outside the file");
    size_t count = dynsym->sh_size / sizeof(elf_sym);
    for (size_t i = 0; i < count; i++) {
        const elf_sym *s = &syms[i];
        if (!exported(s))
            continue;
        if (s->st_name >= strtab->sh_size ||
            memchr(strings + s->st_name, '\0', strtab->sh_size - s->st_name) == NULL)
            return fail(why, why_size, path, "a symbol name lies outside the string table");
        fn(user, strings + s->st_name);
    }
    return 0;
}

static int read_exports(const elf_file *f, const char *path,
                        void (*fn)(void *user, const char *name), void *user, char *why,
                        size_t why_size)
{
    const elf_ehdr *eh = span(f, 0, sizeof(elf_ehdr));
    if (eh == NULL || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return fail(why, why_size, path, "not an ELF file");
    if (eh->e_ident[EI_CLASS] != ELF_CLASS_HERE || eh->e_ident[EI_DATA] != ELF_DATA_HERE)
        return fail(why, why_size, path, "ELF class or byte order of another machine");
    for (size_t i = 0; i < eh->e_shnum; i++) {
        const elf_shdr *sh = section(f, eh, i);
        if (sh == NULL)
            return fail(why, why_size, path, "section headers lie outside the file");
        if (sh->sh_type == SHT_DYNSYM)
            return walk_dynsym(f, eh, sh, fn, user, why, why_size, path);
    }
    return fail(why, why_size, path, "no .dynsym section: not a shared object");
}

int conf_elf_exports(const char *path, void (*fn)(void *user, const char *name), void *user,
                     char *why, size_t why_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(why, why_size, "%s: cannot map it: %s", path, strerror(errno));
        return -1;
    }
    elf_file f = {map, (size_t)st.st_size};
    int rc = read_exports(&f, path, fn, user, why, why_size);
    munmap(map, (size_t)st.st_size);
    return rc;
}
