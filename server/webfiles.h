/* webfiles.h: the files of web/ (the demo page, sse-client.js), built into
 * the server so that it serves them with no configuration. web_root, when
 * set, is looked at first. Immutable; any thread. */
#ifndef SB_WEBFILES_H
#define SB_WEBFILES_H

#include <stddef.h>

struct sb_webfile {
  const char *name; /* file name in web/, e.g. "index.html" */
  const unsigned char *data;
  size_t len;
};

/* The table, ended by an entry whose name is NULL (generated at build). */
extern const struct sb_webfile sb__webfiles[];

/* Returns the built-in file called name, or NULL. */
const struct sb_webfile *sb_webfile_find(const char *name);

#endif
