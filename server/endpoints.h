/* endpoints.h: the GET endpoints of the bridge (internal to the server):
 * the SSE stream, /healthz, /metrics, /api/presence and the web files. Each
 * answers one request, once its headers are in (http.c routes it here). Loop
 * thread, as every libmicrohttpd callback. */
#ifndef SB_ENDPOINTS_H
#define SB_ENDPOINTS_H

#include <microhttpd.h>

#include "handover.h"
#include "request.h"

/* GET <sse_path>?deviceId=...: checks the device and Last-Event-ID (header,
 * or lastEventId), authenticates, and opens a stream with ho (the hub
 * refusing it: 503 with Retry-After). Sets *streaming to 1 when the answer
 * is a stream, else to 0. Returns libmicrohttpd's result. */
enum MHD_Result sb__serve_stream(const struct sb__request *q, struct sb__handover *ho,
                                 int *streaming);

/* GET /healthz: 200 while the MQTT side is connected, else 503, with the
 * counts of connections and users, as JSON. */
enum MHD_Result sb__serve_health(const struct sb__request *q);

/* GET /metrics: the counters and gauges in Prometheus' text format. */
enum MHD_Result sb__serve_metrics(const struct sb__request *q);

/* GET /api/presence: what this instance holds of the caller's user, as JSON
 * (after authentication). */
enum MHD_Result sb__serve_presence(const struct sb__request *q);

/* GET <url>: a file of web/, from web_root when set and the file is there,
 * else the copy built into the server; "/" is index.html. Names are limited
 * to [A-Za-z0-9._-] not starting with a dot, so no path escapes web_root;
 * anything else is 404. */
enum MHD_Result sb__serve_static(const struct sb__request *q, const char *url);

#endif
