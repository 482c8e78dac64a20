/* clock.h: the server's two clocks, read in one place.
 *
 * The core reads no clock: the server reads these and passes the time in.
 * The monotonic clock in milliseconds drives the hub (heartbeats, lingers)
 * and every timeout; the wall clock stamps what people read (event and
 * presence timestamps, the run's start). Any thread. */
#ifndef SB_CLOCK_H
#define SB_CLOCK_H

#include <time.h>

/* Returns t in milliseconds. */
static inline long long sb_clock_ms(struct timespec t)
{
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Returns the monotonic clock in milliseconds (from an unspecified start). */
static inline long long sb_clock_mono_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return sb_clock_ms(t);
}

/* Returns the wall clock (UTC), for timestamps. */
static inline struct timespec sb_clock_wall(void)
{
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

#endif
