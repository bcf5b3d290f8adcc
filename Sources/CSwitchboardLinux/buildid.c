#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CSwitchboardLinux.h"

#include <elf.h>
#include <link.h>
#include <string.h>

struct sb_build_id_search {
    uint8_t *out;
    int cap;
    int length;
};

static int sb_find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct sb_build_id_search *search = data;
    // The first object dl_iterate_phdr reports is the main program.
    for (int index = 0; index < info->dlpi_phnum; index++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[index];
        if (header->p_type != PT_NOTE) continue;
        const char *note = (const char *)(info->dlpi_addr + header->p_vaddr);
        const char *end = note + header->p_memsz;
        while (note + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *entry = (const ElfW(Nhdr) *)note;
            const char *name = note + sizeof(ElfW(Nhdr));
            const char *description = name + ((entry->n_namesz + 3) & ~3u);
            const char *next = description + ((entry->n_descsz + 3) & ~3u);
            if (next > end) break;
            if (entry->n_type == NT_GNU_BUILD_ID && entry->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                int length = (int)entry->n_descsz < search->cap ? (int)entry->n_descsz : search->cap;
                memcpy(search->out, description, (size_t)length);
                search->length = length;
                return 1;
            }
            note = next;
        }
    }
    return 1;  // only the main program
}

int sb_main_build_id(uint8_t *out, int cap) {
    struct sb_build_id_search search = {.out = out, .cap = cap, .length = 0};
    dl_iterate_phdr(sb_find_build_id, &search);
    return search.length;
}
