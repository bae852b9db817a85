/* img_commit -- merge an overlay into its backing file. */
#include "img.h"
#include "util.h"

/* Placeholder while the verb is being written in this session. */
int cmd_commit(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	die_msg("commit: not implemented yet");
	return 63;
}
