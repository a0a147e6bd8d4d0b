/* check_probe - placeholder while the module is written. */
#include <check.h>
#include <stdlib.h>

int main(void)
{
    Suite *s = suite_create("check_probe");
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
