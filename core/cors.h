/* cors.h: the cors_origins allow-list, parsed once.
 *
 * The option is a list of origins separated by spaces and/or commas
 * ("https://app.example, https://b.example"), where "*" stands for any
 * origin. sb_cors_new() parses it into a list that every request then
 * consults with sb_cors_match(), and that the config check asks about "*"
 * (sb_cors_any). Pure: no allocation after sb_cors_new(); a list is not
 * changed once made, so any thread may read it. */
#ifndef SB_CORS_H
#define SB_CORS_H

#include <stddef.h>

/* What a response tells a request's Origin. */
enum sb_cors_answer {
  SB_CORS_NONE = 0, /* nothing: the origin is not on the list */
  SB_CORS_ANY,      /* Access-Control-Allow-Origin: *, without credentials */
  SB_CORS_ORIGIN    /* the origin itself, with credentials and Vary: Origin */
};

struct sb_cors;

/* Parses list (NUL-terminated; "" allows no origin) into *out, which the
 * caller frees with sb_cors_free(). Returns 0, or SB_ENOMEM (*out is then
 * NULL). Any thread. */
int sb_cors_new(const char *list, struct sb_cors **out);

/* Frees c. NULL-safe. */
void sb_cors_free(struct sb_cors *c);

/* Returns what to answer a request from origin (NULL when it sent no Origin
 * header): the first entry of the list that is "*" or exactly the origin
 * decides; no entry, or a NULL c, gives SB_CORS_NONE. Pure. */
enum sb_cors_answer sb_cors_match(const struct sb_cors *c, const char *origin);

/* Returns 1 when the list holds "*" (refused with auth jwt), else 0. Pure. */
int sb_cors_any(const struct sb_cors *c);

#endif
