#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "links.h"

static void test_nothing_to_rewrite(void **state)
{
    (void)state;
    struct buf out = {0};
    const char *bases[] = {"https://conversations.twilio.com", NULL};
    assert_false(links_rewrite("{}", 2, bases, "http://gw", &out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_nothing_to_rewrite)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
