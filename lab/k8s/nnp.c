/* nonewprivs' program for the lab's critest images: set-uid root in the image,
   it prints the effective uid it runs with (0 when privileges could be gained,
   the caller's uid under no_new_privs). */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
