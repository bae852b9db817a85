/* img_resize -- grow or shrink an image. */
#include "img.h"
#include "util.h"

/* Placeholder while the verb is being written in this session. */
int cmd_resize(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	die_msg("resize: not implemented yet");
	return 63;
}
