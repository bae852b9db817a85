/* img_compare -- compare the guest-visible content of two images. */
#include "img.h"
#include "util.h"

/* Placeholder while the verb is being written in this session. */
int cmd_compare(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	die_msg("compare: not implemented yet");
	return 63;
}
