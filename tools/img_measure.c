/* img_measure -- the file size a new pcow image needs. */
#include "img.h"
#include "util.h"

/* Placeholder while the verb is being written in this session. */
int cmd_measure(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	die_msg("measure: not implemented yet");
	return 63;
}
