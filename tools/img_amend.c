/* img_amend -- change options of an image in place. */
#include "img.h"
#include "util.h"

/* Placeholder while the verb is being written in this session. */
int cmd_amend(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	die_msg("amend: not implemented yet");
	return 63;
}
