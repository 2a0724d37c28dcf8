/* svcproxy command line: placeholder entry, completed by the cli work. */
#include <stdio.h>

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "svcproxy: not built yet\n");
	return 2;
}
