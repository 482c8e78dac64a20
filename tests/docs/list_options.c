/* list_options: prints the option table of config.c, one option a line:
 * name, forms (both or daemon), what a reload does (restart, reload or hub)
 * and the default, separated by tabs. check_options.cmake compares it with
 * the documentation. */
#include <stdio.h>

#include "config.h"

int main(void)
{
  static const char *const reload[] = {
    [SB_RELOAD_RESTART] = "restart", [SB_RELOAD_APPLY] = "reload", [SB_RELOAD_HUB] = "hub"};
  const struct sb_option *opts;
  size_t n;

  opts = sb_config_options(&n);
  for (size_t i = 0; i < n; i++)
    printf("%s\t%s\t%s\t%s\n", opts[i].name, opts[i].forms == SB_FORMS_BOTH ? "both" : "daemon",
           reload[opts[i].reload], opts[i].def);
  return fflush(stdout) == 0 ? 0 : 1;
}
