/*
 * mcuquant firmware: bring up the board, load the model into the backend, then answer the host's
 * requests forever (firmware/protocol/PROTOCOL.md). Board specifics live behind mq_hal.h, the
 * model behind mq_backend.h, the protocol in mq_server.c.
 */
#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "mq_hal.h"
#include "mq_server.h"

int main(void)
{
    /* Static storage: the reply cache (MQ_PROTO_WINDOW frames) and buffers, off the (board-sized) stack. */
    static mq_server server;

    mq_hal_init();
    /* Even when the backend fails to load the model, the loop runs: HELLO reports the error. */
    mq_server_init(&server, mq_hal_counter, mq_hal_counter_unit(), MCUQUANT_VERSION, mq_hal_millis, mq_hal_write,
                   mq_hal_rx_buffer());
    for (;;) {
        uint8_t byte;
        const uint8_t *reply = NULL;
        size_t n;
        if (!mq_hal_read_byte(&byte)) continue;
        n = mq_server_feed(&server, byte, mq_hal_millis(), &reply);
        if (n > 0) mq_hal_write(reply, n);
    }
}
