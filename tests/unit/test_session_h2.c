/* test_session_h2.c: the HTTP/2 session of session_h2.c against a real nghttp2 client
 * session (libnghttp2's client API), with the worker, session_h1.c and the exchange stubbed
 * (h2_stubs.h: a fake exchange answers each request as the test's plans say, through the
 * real writer path). What the client sends reaches h2_session_start/h2_on_data; what the
 * session queues reaches the client as its socket takes it. The tests check what each side
 * sees: the HTTP/1.1 head and body the exchange is given, and the frames the client gets.
 *
 * How it links: session_h2.c is #included, and the generic $(BUILD)/test_% rule links the
 * whole libringproxy.a after this file; h2_stubs.h says which objects come from it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#define STUB_CHECK(x) assert_true(x)

#include "../../engine/session_h2.c"
#include "guard.h"
#include "h2_stubs.h"

/* ---- the plans of this test's requests, by arrival ------------------------------------- */

#define N_PLANS 8

static struct plan plans[N_PLANS];

static struct plan plan_for(uint32_t k, const struct h1_request *r)
{
    (void)r;
    return plans[k < N_PLANS ? k : N_PLANS - 1];
}

/* ---- the client: nghttp2's client session ------------------------------------------------- */

#define BODY_CAP (1024u * 1024)

/* What the client saw of one stream. */
struct resp {
    int status;
    char fields[4096]; /* "name: value\n" for each response field, :status included */
    uint32_t fields_len;
    char *body;
    uint32_t body_len;
    int data_frames, headers_frames;
    bool ended;   /* END_STREAM received */
    bool closed;  /* the stream closed */
    uint32_t rst; /* a RST_STREAM's code (+1: 0 means none) */
    uint32_t err; /* the close's code */
    /* the request body the client sends: chunks, then trailers */
    const char *chunks[4];
    uint32_t n_chunks, next_chunk;
    const nghttp2_nv *trailers;
    size_t n_trailers;
};

static nghttp2_session *cli;
static struct resp resps[4];
static bool started;
static char tx[1u << 20];
static uint32_t tx_len;

static int on_cli_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name,
                         size_t nn, const uint8_t *value, size_t vn, uint8_t flags, void *user)
{
    struct resp *r = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
    int k;

    (void)flags;
    (void)user;
    assert_non_null(r);
    if (nn == 7 && !memcmp(name, ":status", 7))
        r->status = atoi((const char *)value);
    k = snprintf(r->fields + r->fields_len, sizeof(r->fields) - r->fields_len, "%.*s: %.*s\n",
                 (int)nn, name, (int)vn, value);
    assert_true(k > 0 && r->fields_len + (uint32_t)k < sizeof(r->fields));
    r->fields_len += (uint32_t)k;
    return 0;
}

static int on_cli_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                       size_t len, void *user)
{
    struct resp *r = nghttp2_session_get_stream_user_data(ng, id);

    (void)flags;
    (void)user;
    assert_non_null(r);
    assert_true(r->body_len + len <= BODY_CAP);
    memcpy(r->body + r->body_len, data, len);
    r->body_len += (uint32_t)len;
    return 0;
}

static int on_cli_frame(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
    struct resp *r =
        fr->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id) : NULL;

    (void)user;
    if (!r)
        return 0;
    r->data_frames += fr->hd.type == NGHTTP2_DATA;
    r->headers_frames += fr->hd.type == NGHTTP2_HEADERS;
    if ((fr->hd.type == NGHTTP2_DATA || fr->hd.type == NGHTTP2_HEADERS) &&
        (fr->hd.flags & NGHTTP2_FLAG_END_STREAM))
        r->ended = true;
    if (fr->hd.type == NGHTTP2_RST_STREAM)
        r->rst = fr->rst_stream.error_code + 1;
    return 0;
}

static int on_cli_close(nghttp2_session *ng, int32_t id, uint32_t err, void *user)
{
    struct resp *r = nghttp2_session_get_stream_user_data(ng, id);

    (void)user;
    if (r) {
        r->closed = true;
        r->err = err;
    }
    return 0;
}

/* The request body: one DATA frame per chunk; the trailers after the last one. */
static ssize_t cli_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    struct resp *r = src->ptr;
    size_t n;

    (void)user;
    if (r->next_chunk == r->n_chunks) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    n = strlen(r->chunks[r->next_chunk]);
    assert_true(n <= len);
    memcpy(buf, r->chunks[r->next_chunk++], n);
    if (r->next_chunk == r->n_chunks) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (r->trailers) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            assert_int_equal(nghttp2_submit_trailer(ng, id, r->trailers, r->n_trailers), 0);
        }
    }
    return (ssize_t)n;
}

static void to_client(const char *p, uint32_t n)
{
    assert_int_equal(nghttp2_session_mem_recv(cli, (const uint8_t *)p, n), (ssize_t)n);
}

/* Bytes go both ways, and the backends take their steps, until nothing moves. */
static void pump(void)
{
    for (int round = 0; round < 10000; round++) {
        const uint8_t *p;
        ssize_t n;
        bool moved = false;

        while ((n = nghttp2_session_mem_send(cli, &p)) > 0) {
            assert_true(tx_len + (size_t)n <= sizeof(tx));
            memcpy(tx + tx_len, p, (size_t)n);
            tx_len += (uint32_t)n;
        }
        assert_true(n == 0);
        if (tx_len && !cl.sk.dead) {
            if (!started)
                h2_session_start(&cl, tx, tx_len);
            else
                h2_on_data(&cl, tx, tx_len);
            started = true;
            moved = true;
        }
        tx_len = 0;
        fakes_progress();
        h2_tick(&wrk); /* the loop pass's end: the streams' output goes */
        while (client_took(UINT32_MAX))
            moved = true;
        graveyard_run();
        if (!moved)
            return;
    }
    fail_msg("the conversation does not settle");
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE         \
    }

/* Submits a request (its body: the chunks of resps[i], if any); returns its stream id. */
static int32_t request(int i, const nghttp2_nv *nv, size_t n)
{
    struct resp *r = &resps[i];
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = cli_read};
    int32_t id = nghttp2_submit_request(cli, NULL, nv, n, r->n_chunks ? &prd : NULL, r);

    assert_true(id > 0);
    return id;
}

static int32_t get(int i, const char *path)
{
    const nghttp2_nv nv[] = {
        NV(":method", "GET"),
        NV(":scheme", "https"),
        NV(":authority", "a.test"),
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE},
    };

    return request(i, nv, 4);
}

static void assert_head(const char *want)
{
    assert_int_equal(S.head_len, strlen(want));
    assert_memory_equal(S.head, want, S.head_len);
}

static void assert_body(const struct resp *r, const char *want)
{
    assert_int_equal(r->body_len, strlen(want));
    assert_memory_equal(r->body, want, r->body_len);
}

/* ---- fixtures -------------------------------------------------------------------------- */

static int setup(void **state)
{
    nghttp2_session_callbacks *cb;

    (void)state;
    world_init();
    client_sink = to_client;
    memset(plans, 0, sizeof(plans));
    for (int i = 0; i < 4; i++) {
        char *b = resps[i].body;
        memset(&resps[i], 0, sizeof(resps[i]));
        resps[i].body = b ? b : malloc(BODY_CAP);
        assert_non_null(resps[i].body);
    }
    started = false;
    tx_len = 0;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_cli_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_cli_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_cli_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_cli_close);
    assert_int_equal(nghttp2_session_client_new(&cli, cb, NULL), 0);
    nghttp2_session_callbacks_del(cb);
    assert_int_equal(nghttp2_submit_settings(cli, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    world_fini(); /* the connection closes: every exchange ended, every stream freed */
    nghttp2_session_del(cli);
    cli = NULL;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++)
        free(resps[i].body);
    return 0;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* A GET: the exchange gets its HTTP/1.1 head, the client HEADERS and DATA with the body. */
static void get_gets_headers_and_data(void **state)
{
    (void)state;
    plans[0] = (struct plan){
        .head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
        .body = "hello",
        .body_len = 5,
    };
    assert_int_equal(get(0, "/path?q=1"), 1);
    pump();
    assert_int_equal(S.starts, 1);
    assert_head("GET /path?q=1 HTTP/1.1\r\nhost: a.test\r\n\r\n");
    assert_int_equal(resps[0].status, 200);
    assert_string_equal(resps[0].fields,
                        ":status: 200\ncontent-length: 5\ncontent-type: text/plain\n");
    assert_body(&resps[0], "hello");
    assert_true(resps[0].data_frames >= 1);
    assert_true(resps[0].ended && resps[0].closed);
    assert_int_equal(resps[0].err, NGHTTP2_NO_ERROR);
    assert_int_equal(resps[0].rst, 0);
    assert_int_equal(S.ends, 1);
    assert_int_equal(S.aborts, 0);
    /* the server's SETTINGS: its limits, no push */
    assert_int_equal(
        nghttp2_session_get_remote_settings(cli, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 128);
    assert_int_equal(
        nghttp2_session_get_remote_settings(cli, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), 16384);
    assert_int_equal(nghttp2_session_get_remote_settings(cli, NGHTTP2_SETTINGS_ENABLE_PUSH), 0);
    assert_int_equal(wrk.h2_conns, 1);
    assert_int_equal(wrk.h2_streams, 1);
    assert_false(cl.sk.dead); /* the connection stays for more streams */
}

/* Without content-length the body goes on chunked: transfer-encoding in the head, each DATA
 * frame a chunk, the trailers in the last one; cookies joined, fields in their order. */
static void chunked_body_and_trailers(void **state)
{
    const nghttp2_nv nv[] = {
        NV(":method", "POST"),  NV(":scheme", "https"), NV(":authority", "a.test"),
        NV(":path", "/up?q=1"), NV("cookie", "a=1"),    NV("user-agent", "u"),
        NV("cookie", "b=2"),
    };
    const nghttp2_nv tr[] = {NV("x-t", "1"), NV("x-u", "2")};

    (void)state;
    plans[0] = (struct plan){.when = ANSWER_AFTER_BODY,
                             .head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"};
    resps[0].chunks[0] = "abc";
    resps[0].chunks[1] = "defg";
    resps[0].n_chunks = 2;
    resps[0].trailers = tr;
    resps[0].n_trailers = 2;
    request(0, nv, sizeof(nv) / sizeof(nv[0]));
    pump();
    assert_head("POST /up?q=1 HTTP/1.1\r\nhost: a.test\r\nuser-agent: u\r\ncookie: a=1; "
                "b=2\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_int_equal(S.body_len, strlen("3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n"));
    assert_memory_equal(S.body, "3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n",
                        S.body_len);
    assert_int_equal(S.bad_bodies, 0);
    assert_int_equal(resps[0].status, 200);
    assert_body(&resps[0], "ok");
    assert_true(resps[0].closed);
    assert_int_equal(resps[0].err, NGHTTP2_NO_ERROR);
}

/* A chunked body that ends with its last DATA frame (no trailers): an empty last chunk. */
static void chunked_body_without_trailers(void **state)
{
    const nghttp2_nv nv[] = {NV(":method", "PUT"), NV(":scheme", "https"),
                             NV(":authority", "a.test"), NV(":path", "/p")};

    (void)state;
    plans[0] = (struct plan){.when = ANSWER_AFTER_BODY};
    resps[0].chunks[0] = "xyz";
    resps[0].n_chunks = 1;
    request(0, nv, 4);
    pump();
    assert_head("PUT /p HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_int_equal(S.body_len, strlen("3\r\nxyz\r\n0\r\n\r\n"));
    assert_memory_equal(S.body, "3\r\nxyz\r\n0\r\n\r\n", S.body_len);
    assert_int_equal(resps[0].status, 200);
    assert_int_equal(resps[0].err, NGHTTP2_NO_ERROR);
}

/* An empty cookie field adds nothing to the joined one (it was a copy from a NULL buffer:
 * undefined behaviour, fatal under the SAN=1 build, as was every chunked body without
 * trailers: chunked_body_without_trailers). */
static void empty_cookie_first(void **state)
{
    const nghttp2_nv nv[] = {NV(":method", "GET"),       NV(":scheme", "https"),
                             NV(":authority", "a.test"), NV(":path", "/c"),
                             NV("cookie", ""),           NV("cookie", "a=1")};

    (void)state;
    request(0, nv, 6);
    pump();
    assert_head("GET /c HTTP/1.1\r\nhost: a.test\r\ncookie: a=1\r\n\r\n");
    assert_int_equal(resps[0].status, 200);
}

/* With a content-length the body goes as it came, and trailers have no room (dropped). */
static void length_body_drops_trailers(void **state)
{
    const nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"),
                             NV(":authority", "a.test"), NV(":path", "/l"),
                             NV("content-length", "7")};
    const nghttp2_nv tr[] = {NV("x-t", "1")};

    (void)state;
    plans[0] = (struct plan){.when = ANSWER_AFTER_BODY};
    resps[0].chunks[0] = "abc";
    resps[0].chunks[1] = "defg";
    resps[0].n_chunks = 2;
    resps[0].trailers = tr;
    resps[0].n_trailers = 1;
    request(0, nv, 5);
    pump();
    assert_head("POST /l HTTP/1.1\r\nhost: a.test\r\ncontent-length: 7\r\n\r\n");
    assert_int_equal(S.body_len, 7);
    assert_memory_equal(S.body, "abcdefg", 7);
    assert_int_equal(resps[0].status, 200);
    assert_int_equal(resps[0].err, NGHTTP2_NO_ERROR);
}

/* The response's connection-specific fields go (with the ones its Connection names), and
 * names are lower case; values are left as they are. */
static void response_loses_connection_fields(void **state)
{
    (void)state;
    plans[0] = (struct plan){
        .head = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Drop\r\nKeep-Alive: timeout=5\r\n"
                "Transfer-Encoding: chunked\r\nX-Drop: 1\r\nX-Keep: Yes\r\n"
                "Proxy-Connection: keep-alive\r\nUpgrade: foo\r\nSET-Cookie: A=B\r\n\r\n",
        .body = "hello",
        .body_len = 5,
    };
    get(0, "/");
    pump();
    assert_int_equal(resps[0].status, 200);
    assert_string_equal(resps[0].fields, ":status: 200\nx-keep: Yes\nset-cookie: A=B\n");
    assert_body(&resps[0], "hello");
    assert_true(resps[0].ended);
    assert_int_equal(resps[0].err, NGHTTP2_NO_ERROR); /* nghttp2's client would reset otherwise */
}

/* HEAD and 204 answers carry no DATA: END_STREAM on their HEADERS. The HEAD's exchange is
 * still at work when the stream closes (its backend connection ends on its own). */
static void head_and_204_have_no_data(void **state)
{
    const nghttp2_nv head[] = {NV(":method", "HEAD"), NV(":scheme", "https"),
                               NV(":authority", "a.test"), NV(":path", "/h")};

    (void)state;
    plans[0] = (struct plan){.when = ANSWER_HEAD_NOW,
                             .head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"};
    plans[1] = (struct plan){.head = "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"};
    request(0, head, 4);
    get(1, "/n");
    pump();
    assert_int_equal(S.starts, 2);
    assert_int_equal(resps[0].status, 200);
    assert_string_equal(resps[0].fields, ":status: 200\ncontent-length: 5\n");
    assert_int_equal(resps[1].status, 204);
    assert_string_equal(resps[1].fields, ":status: 204\nx-a: b\n");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(resps[i].data_frames, 0);
        assert_int_equal(resps[i].headers_frames, 1);
        assert_true(resps[i].ended && resps[i].closed);
        assert_int_equal(resps[i].err, NGHTTP2_NO_ERROR);
        assert_int_equal(resps[i].body_len, 0);
    }
    assert_int_equal(S.ends, 2);
    assert_int_equal(S.aborts, 0);
}

/* A Host that disagrees with :authority is a 400 (RFC 9113 section 8.3.1); one that agrees,
 * in any case, is the only host field the head has. */
static void host_against_authority(void **state)
{
    const nghttp2_nv bad[] = {NV(":method", "GET"), NV(":scheme", "https"),
                              NV(":authority", "a.test"), NV(":path", "/"), NV("host", "b.test")};
    const nghttp2_nv same[] = {NV(":method", "GET"), NV(":scheme", "https"),
                               NV(":authority", "a.test"), NV(":path", "/s"), NV("host", "A.Test")};

    (void)state;
    request(0, bad, 5);
    pump();
    assert_int_equal(S.starts, 0);
    assert_int_equal(S.last_error, 400);
    assert_int_equal(resps[0].status, 400);
    assert_body(&resps[0], "400 Bad Request\n");
    assert_int_equal(resps[0].err, NGHTTP2_NO_ERROR);
    request(1, same, 5);
    pump();
    assert_int_equal(S.starts, 1);
    assert_head("GET /s HTTP/1.1\r\nhost: A.Test\r\n\r\n");
    assert_int_equal(resps[1].status, 200);
    assert_false(cl.sk.dead);
}

/* Without :authority the request's Host is its own field. */
static void host_field_without_authority(void **state)
{
    const nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/o"),
                             NV("host", "b.test")};

    (void)state;
    request(0, nv, 4);
    pump();
    assert_head("GET /o HTTP/1.1\r\nhost: b.test\r\n\r\n");
    assert_int_equal(resps[0].status, 200);
}

/* A header list past max_head_bytes (RFC 7541's accounting), or past max_headers, is a 431
 * before anything reaches an exchange. */
static void header_list_past_the_limits(void **state)
{
    static char big[16400];
    nghttp2_nv nv[110] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "a.test"),
                          NV(":path", "/")};
    char names[106][16];

    (void)state;
    memset(big, 'v', sizeof(big));
    nv[4] = (nghttp2_nv){(uint8_t *)"x-big", (uint8_t *)big, 5, 16384 - 32 - 5,
                         NGHTTP2_NV_FLAG_NONE}; /* the pseudo-headers tip it over */
    request(0, nv, 5);
    pump();
    assert_int_equal(resps[0].status, 431);
    assert_int_equal(S.starts, 0);
    assert_int_equal(wrk.h2_big_headers, 1);
    for (int i = 0; i < 106; i++) {
        snprintf(names[i], sizeof(names[i]), "x-%d", i);
        nv[4 + i] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)"1", strlen(names[i]), 1,
                                 NGHTTP2_NV_FLAG_NONE};
    }
    request(1, nv, 4 + 96); /* 4 pseudo-headers and 96 fields: 100, within the limit */
    pump();
    assert_int_equal(resps[1].status, 200);
    assert_int_equal(S.starts, 1);
    request(2, nv, 4 + 97); /* 101 */
    pump();
    assert_int_equal(resps[2].status, 431);
    assert_int_equal(S.starts, 1);
    assert_int_equal(wrk.h2_big_headers, 2);
    assert_false(cl.sk.dead);
}

/* A large body goes out under the client's windows, the backend held back meanwhile. */
static void large_body_under_flow_control(void **state)
{
    (void)state;
    plans[0] = (struct plan){.when = ANSWER_HEAD_NOW,
                             .head = "HTTP/1.1 200 OK\r\nContent-Length: 600000\r\n\r\n",
                             .body_len = 600000,
                             .piece = 16384};
    get(0, "/big");
    pump();
    assert_int_equal(resps[0].status, 200);
    assert_int_equal(resps[0].body_len, 600000);
    for (uint32_t i = 0; i < resps[0].body_len; i++)
        if (resps[0].body[i] != 'x')
            fail_msg("byte %u is %d", i, resps[0].body[i]);
    assert_true(resps[0].ended);
    assert_int_equal(resps[0].err, NGHTTP2_NO_ERROR);
    assert_true(S.resumes > 0); /* the stream buffered past its window: the backend waited */
}

/* The client resets a stream before its answer: its exchange ends, and it counts. */
static void client_reset_aborts_the_exchange(void **state)
{
    const nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"),
                             NV(":authority", "a.test"), NV(":path", "/r")};
    int32_t id;

    (void)state;
    plans[0] = (struct plan){.when = ANSWER_AFTER_BODY};
    id = nghttp2_submit_headers(cli, NGHTTP2_FLAG_NONE, -1, NULL, nv, 4, &resps[0]);
    assert_true(id > 0);
    pump();
    assert_int_equal(S.starts, 1);
    assert_int_equal(S.aborts, 0);
    assert_int_equal(nghttp2_submit_rst_stream(cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL), 0);
    pump();
    assert_int_equal(S.aborts, 1);
    assert_int_equal(wrk.h2_resets, 1);
    assert_int_equal(S.streams_freed, 1);
    assert_false(cl.sk.dead);
}

/* A request body that stops arriving is answered 408 after the domain's read_timeout. */
static void body_that_stops_is_408(void **state)
{
    const nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"),
                             NV(":authority", "a.test"), NV(":path", "/slow")};

    (void)state;
    plans[0] = (struct plan){.when = ANSWER_AFTER_BODY};
    assert_true(nghttp2_submit_headers(cli, NGHTTP2_FLAG_NONE, -1, NULL, nv, 4, &resps[0]) > 0);
    pump();
    wrk.now_ms += tgt.read_timeout_ms - 100;
    timer_run(&wtw, wrk.now_ms);
    pump();
    assert_int_equal(resps[0].status, 0);
    wrk.now_ms += 200;
    timer_run(&wtw, wrk.now_ms);
    pump();
    assert_int_equal(resps[0].status, 408);
    assert_int_equal(S.aborts, 1);
    assert_true(resps[0].closed);
}

/* A backend that fails mid-body resets the stream (its head went out already). */
static void backend_failure_resets_the_stream(void **state)
{
    (void)state;
    plans[0] = (struct plan){.when = ANSWER_HEAD_NOW,
                             .head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                             .body = "01234",
                             .body_len = 5,
                             .fail_mid_body = true};
    get(0, "/f");
    pump();
    assert_int_equal(resps[0].status, 200);
    assert_true(resps[0].closed);
    assert_int_equal(resps[0].rst, NGHTTP2_INTERNAL_ERROR + 1);
    assert_int_equal(S.aborts, 1);
    assert_false(cl.sk.dead);
}

/* The connection closes with streams at work: each exchange is ended once. */
static void close_with_streams_in_flight(void **state)
{
    (void)state;
    plans[0] = (struct plan){.when = ANSWER_AFTER_BODY};
    plans[1] = plans[0];
    for (int i = 0; i < 2; i++) {
        const nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"),
                                 NV(":authority", "a.test"), NV(":path", "/w")};
        assert_true(nghttp2_submit_headers(cli, NGHTTP2_FLAG_NONE, -1, NULL, nv, 4, &resps[i]) > 0);
    }
    pump();
    assert_int_equal(S.starts, 2);
    conn_close(&cl);
    assert_int_equal(S.aborts, 2);
    graveyard_run();
    assert_true(S.cl_released);
    assert_int_equal(S.streams_freed, 2);
}

/* h2c: the client preface, a prefix of it, or something else. */
static void preface_match(void **state)
{
    static const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4";
    struct guarded g;

    (void)state;
    assert_int_equal(h2_preface_match(guard_copy(&g, pre, 24), 24), 1);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, pre, 28), 28), 1);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, pre, 8), 8), 0);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, pre, 23), 23), 0);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, pre, 0), 0), 0);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, "GET / HTTP/1.1\r\n", 16), 16), -1);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, "PRI * HTTP/2.0\r\n\r\nSX", 20), 20), -1);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, "P", 1), 1), 0);
    guard_free(&g);
    assert_int_equal(h2_preface_match(guard_copy(&g, "Q", 1), 1), -1);
    guard_free(&g);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(get_gets_headers_and_data),     T(chunked_body_and_trailers),
        T(chunked_body_without_trailers), T(empty_cookie_first),
        T(length_body_drops_trailers),    T(response_loses_connection_fields),
        T(head_and_204_have_no_data),     T(host_against_authority),
        T(host_field_without_authority),  T(header_list_past_the_limits),
        T(large_body_under_flow_control), T(client_reset_aborts_the_exchange),
        T(body_that_stops_is_408),        T(backend_failure_resets_the_stream),
        T(close_with_streams_in_flight),  cmocka_unit_test(preface_match),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
