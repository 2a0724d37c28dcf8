/* Fuzz target: the KubeProxyConfiguration reader (JSON or YAML), through
 * its only entry point, a file: the input is put in a memfd and read by
 * its /proc path, so the fuzzer never touches the file system. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "svcproxy/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_config cfg;
	struct sp_diag diag;
	char path[64];
	int fd = memfd_create("sp-fuzz-config", MFD_CLOEXEC);

	if (fd < 0) {
		perror("memfd_create");
		abort();
	}
	for (size_t off = 0; off < size;) {
		ssize_t n = write(fd, data + off, size - off);

		if (n <= 0) {
			perror("write memfd");
			abort();
		}
		off += (size_t)n;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	sp_config_init(&cfg);
	sp_diag_init(&diag);
	sp_config_load_file(&cfg, path, &diag);
	sp_config_free(&cfg);
	sp_diag_free(&diag);
	close(fd);
	return 0;
}
