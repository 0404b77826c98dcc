// librdkafka for Swift: the library's header when it is installed (Debian's librdkafka-dev),
// and the few helpers Swift cannot call directly (rd_kafka_producev is variadic). Without
// the header this module is empty; SluiceRdKafka is compiled only with the RdKafka trait.
#ifndef SLUICE_CRDKAFKA_H
#define SLUICE_CRDKAFKA_H
#if __has_include(<librdkafka/rdkafka.h>)
#include <librdkafka/rdkafka.h>

/// Enqueues one message for `topic`'s `partition`, copying key and value (NULL key or value:
/// a null one). On success librdkafka owns `headers` (may be NULL); on failure the caller
/// still does. `opaque` comes back in the delivery report.
rd_kafka_resp_err_t sluice_rdk_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                       const void *key, size_t key_len,
                                       const void *value, size_t value_len,
                                       int64_t timestamp, rd_kafka_headers_t *headers, void *opaque);
#endif
#endif
