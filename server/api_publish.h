/* api_publish.h: POST /api/publish (internal to the server).
 *
 * Reads the request's body, has the core map it to an MQTT message
 * (publish.h) and hands that to the MQTT side through the environment's
 * publish callback: the daemon publishes it at mqtt_qos, the plugin at QoS 1,
 * neither retained. Answers 202 with the topic, or the refusal's status
 * (400, 403, 413), 401 without a user, 503 while MQTT is away. Loop
 * thread, as every libmicrohttpd callback. */
#ifndef SB_API_PUBLISH_H
#define SB_API_PUBLISH_H

#include <stddef.h>

#include <microhttpd.h>

#include "request.h"

/* Serves one call of libmicrohttpd's request handler for POST /api/publish:
 * the first (headers only) authenticates and refuses a Content-Length over
 * the limit (answered at once, *con_cls left NULL: the caller has the
 * connection linger, linger.h), the next ones read the body into an upload
 * kept in *con_cls (past the limit they throw it away, for a while), the
 * last answers. Returns libmicrohttpd's result. */
enum MHD_Result sb__serve_publish(const struct sb__request *q, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls);

/* Frees an upload that sb__serve_publish() left in a request's con_cls,
 * when the request ends. NULL-safe. */
void sb__publish_upload_free(void *upload);

#endif
