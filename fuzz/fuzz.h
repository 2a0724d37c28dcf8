/* The libFuzzer entry point every target defines. The same targets are
 * linked with replay.c into ordinary programs, so that `make check` runs the
 * seed corpora and every input that once crashed (fuzz/regress/) without
 * clang or libFuzzer. */
#ifndef SP_FUZZ_H
#define SP_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
