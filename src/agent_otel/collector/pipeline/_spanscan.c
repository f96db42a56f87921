/*
 * _spanscan: the normalizer's span walk, done on the protobuf bytes of an OTLP
 * ExportTraceServiceRequest (issue 7).
 *
 * Why C. The normalizer reads a few ranked keys out of every span's attributes. Through the
 * protobuf runtime every attribute costs a KeyValue object, a key string, an AnyValue object and
 * a WhichOneof call before the key can even be skipped: that walk was about 60% of the
 * normalizer and the largest single cost of a collector process under load. Here the same walk
 * reads the wire format directly and creates Python objects only for keys (to look them up) and
 * for the values the normalizer keeps.
 *
 * Contract (normalize.py's ``_read`` is the reference; tests/collector/test_spanscan.py compares
 * both on fixtures, load-generator traffic and random messages):
 * - The body has already been parsed by the protobuf runtime, so it is a valid message (UTF-8
 *   strings included). Anything this scanner does not handle exactly like the runtime (a
 *   singular field sent twice, a field with an unexpected wire type, groups, nesting deeper than
 *   64) makes ``scan`` return None, and the caller uses the protobuf objects instead.
 * - ``scan(body, kinds, classify, text_type)`` returns a list with one tuple per span:
 *     (service, trace_id, span_id, parent_span_id, name, start_ns, end_ns, status_code,
 *      status_message, found, input_size, input_type, output_size, output_type, span_bytes)
 *   ``service`` is the first ``service.name`` resource attribute as ``any_value`` returns it (or
 *   None); ``found`` maps concept -> value of its best-ranked non-empty key, exactly as
 *   ``_read``; sizes and types are those ``_Content`` computes; ``span_bytes`` is the span's
 *   encoding when it has events (the caller parses those spans to read them), else None.
 * - ``kinds`` is the normalizer's key memo (key -> (concept, rank) | "input" | "output" |
 *   "other" | None); ``classify(key)`` is called for a key not in it (and fills it).
 * - ``scan(body, kinds, classify, text_type, recipe, normalizer, tenant_id, now_ns,
 *   max_future_ns, max_age_ns, counts)``: the same walk, and a plain span becomes its
 *   ``SpanRecord`` here instead of a tuple (see "records" below); before the first span of each
 *   resource a pair ``(service, sanitized service)`` is placed in the list.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

/* Returned by the parsing helpers: OK, BAIL (not a message this scanner handles: the caller
 * falls back to the protobuf objects) or ERROR (a Python exception is set). */
enum { OK = 0, BAIL = 1, ERROR = 2 };

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

typedef struct {
    uint32_t field;
    uint32_t wire;
    uint64_t varint;          /* wire 0 */
    const uint8_t *data;      /* wire 1, 2, 5 */
    Py_ssize_t size;
} Field;

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return BAIL;
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return OK;
        }
    }
    return BAIL;
}

/* The next field of a message; BAIL on groups, truncation or a zero field number. */
static int next_field(Reader *r, Field *f) {
    uint64_t tag;
    if (read_varint(r, &tag) != OK)
        return BAIL;
    f->field = (uint32_t)(tag >> 3);
    f->wire = (uint32_t)(tag & 7);
    if (f->field == 0 || (tag >> 3) > 0x1fffffff)
        return BAIL;
    switch (f->wire) {
    case 0:
        return read_varint(r, &f->varint);
    case 1:
        if (r->end - r->p < 8)
            return BAIL;
        f->data = r->p;
        f->size = 8;
        r->p += 8;
        return OK;
    case 2: {
        uint64_t length;
        if (read_varint(r, &length) != OK || length > (uint64_t)(r->end - r->p))
            return BAIL;
        f->data = r->p;
        f->size = (Py_ssize_t)length;
        r->p += length;
        return OK;
    }
    case 5:
        if (r->end - r->p < 4)
            return BAIL;
        f->data = r->p;
        f->size = 4;
        r->p += 4;
        return OK;
    default: /* 3, 4: groups; 6, 7: invalid */
        return BAIL;
    }
}

static uint64_t fixed64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static PyObject *utf8(const uint8_t *data, Py_ssize_t size) {
    return PyUnicode_DecodeUTF8((const char *)data, size, "strict");
}

/* A singular field seen before: protobuf would merge or overwrite; leave that to it. */
#define ONCE(mask, bit)                                                                          \
    do {                                                                                         \
        if ((mask) & (1u << (bit)))                                                              \
            return BAIL;                                                                         \
        (mask) |= 1u << (bit);                                                                   \
    } while (0)

/* -- AnyValue ------------------------------------------------------------------------------- */

typedef struct {
    uint32_t kind; /* 0: not set, else the oneof field number (1 string ... 7 bytes) */
    uint64_t varint;
    const uint8_t *data;
    Py_ssize_t size;
} AnyValue;

static int parse_any(const uint8_t *data, Py_ssize_t size, AnyValue *out) {
    Reader r = {data, data + size};
    Field f;
    out->kind = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f) != OK)
            return BAIL;
        if (f.field < 1 || f.field > 7)
            continue; /* unknown field */
        if (out->kind != 0)
            return BAIL; /* two oneof members: the last wins in protobuf */
        uint32_t expected = (f.field == 2 || f.field == 3) ? 0 : (f.field == 4 ? 1 : 2);
        if (f.wire != expected)
            return BAIL;
        out->kind = f.field;
        out->varint = f.varint;
        out->data = f.data;
        out->size = f.size;
    }
    return OK;
}

static int convert_any(const uint8_t *data, Py_ssize_t size, int depth, PyObject **out);

/* A KeyValue's key and value (value NULL/0 when absent). */
static int parse_key_value(const uint8_t *data, Py_ssize_t size, const uint8_t **key, Py_ssize_t *key_size,
                           const uint8_t **value, Py_ssize_t *value_size) {
    Reader r = {data, data + size};
    Field f;
    uint32_t seen = 0;
    *key = data;
    *key_size = 0;
    *value = NULL;
    *value_size = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f) != OK)
            return BAIL;
        if (f.field == 1) {
            if (f.wire != 2)
                return BAIL;
            ONCE(seen, 1);
            *key = f.data;
            *key_size = f.size;
        } else if (f.field == 2) {
            if (f.wire != 2)
                return BAIL;
            ONCE(seen, 2);
            *value = f.data;
            *value_size = f.size;
        }
    }
    return OK;
}

/* ``any_value`` of normalize.py: None, str, bool, int, float, bytes, list or dict. */
static int convert_any(const uint8_t *data, Py_ssize_t size, int depth, PyObject **out) {
    AnyValue v;
    if (depth > MAX_DEPTH)
        return BAIL;
    if (parse_any(data, size, &v) != OK)
        return BAIL;
    switch (v.kind) {
    case 0:
        *out = Py_NewRef(Py_None);
        return OK;
    case 1:
        *out = utf8(v.data, v.size);
        return *out ? OK : BAIL;
    case 2:
        *out = PyBool_FromLong(v.varint != 0);
        return OK;
    case 3:
        *out = PyLong_FromLongLong((long long)(int64_t)v.varint);
        return *out ? OK : ERROR;
    case 4: {
        double d;
        uint64_t bits = fixed64(v.data);
        memcpy(&d, &bits, sizeof d);
        *out = PyFloat_FromDouble(d);
        return *out ? OK : ERROR;
    }
    case 7:
        *out = PyBytes_FromStringAndSize((const char *)v.data, v.size);
        return *out ? OK : ERROR;
    case 5: { /* ArrayValue: repeated AnyValue values = 1 */
        PyObject *list = PyList_New(0);
        if (!list)
            return ERROR;
        Reader r = {v.data, v.data + v.size};
        Field f;
        while (r.p < r.end) {
            if (next_field(&r, &f) != OK || (f.field == 1 && f.wire != 2)) {
                Py_DECREF(list);
                return BAIL;
            }
            if (f.field != 1)
                continue;
            PyObject *item;
            int status = convert_any(f.data, f.size, depth + 1, &item);
            if (status != OK) {
                Py_DECREF(list);
                return status;
            }
            int failed = PyList_Append(list, item);
            Py_DECREF(item);
            if (failed) {
                Py_DECREF(list);
                return ERROR;
            }
        }
        *out = list;
        return OK;
    }
    case 6: { /* KeyValueList: repeated KeyValue values = 1 */
        PyObject *dict = PyDict_New();
        if (!dict)
            return ERROR;
        Reader r = {v.data, v.data + v.size};
        Field f;
        while (r.p < r.end) {
            if (next_field(&r, &f) != OK || (f.field == 1 && f.wire != 2)) {
                Py_DECREF(dict);
                return BAIL;
            }
            if (f.field != 1)
                continue;
            const uint8_t *key, *value;
            Py_ssize_t key_size, value_size;
            if (parse_key_value(f.data, f.size, &key, &key_size, &value, &value_size) != OK) {
                Py_DECREF(dict);
                return BAIL;
            }
            PyObject *key_obj = utf8(key, key_size);
            if (!key_obj) {
                Py_DECREF(dict);
                return BAIL;
            }
            PyObject *item;
            int status = convert_any(value, value_size, depth + 1, &item);
            if (status != OK) {
                Py_DECREF(key_obj);
                Py_DECREF(dict);
                return status;
            }
            int failed = PyDict_SetItem(dict, key_obj, item);
            Py_DECREF(key_obj);
            Py_DECREF(item);
            if (failed) {
                Py_DECREF(dict);
                return ERROR;
            }
        }
        *out = dict;
        return OK;
    }
    }
    return BAIL;
}

/* -- content: size and type of one side ----------------------------------------------------- */

typedef struct {
    int seen;            /* a value has been measured: type is set */
    long long size;
    PyObject *type;      /* new reference once seen */
} Side;

static Py_ssize_t varint_size(uint64_t v) {
    Py_ssize_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* ``_measure``: (size, type) of a content value; the type only when ``want_type``. */
/* Python's str.isspace() for one ASCII character. */
static int ascii_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

/* ``sanitize.content.text_type`` on UTF-8 bytes, without decoding them, when every character it
 * looks at is ASCII (then a character is a byte); NULL when one is not (the caller asks Python).
 * It looks at the first non-blank character within the first 64 (anywhere when those are all
 * blank), the last within the last 64 likewise, and a "data:" prefix within the first 64. */
static const char *ascii_text_type(const uint8_t *p, Py_ssize_t n) {
    Py_ssize_t i = 0, head_end = n < 64 ? n : 64;
    while (i < n && p[i] < 0x80 && ascii_space(p[i]))
        i++;
    if (i < n && p[i] >= 0x80)
        return NULL;
    if (i == n)
        return "empty"; /* blank or empty */
    Py_ssize_t j = n - 1; /* value[-64:].rstrip() or value.rstrip(): the last non-blank character */
    while (j > i && p[j] < 0x80 && ascii_space(p[j]))
        j--;
    if (p[j] >= 0x80)
        return NULL;
    uint8_t first = p[i], last = p[j];
    if ((first == '{' && last == '}') || (first == '[' && last == ']'))
        return "json";
    /* head = value[:64].lstrip(), or value.lstrip() when the first 64 are blank */
    Py_ssize_t limit = i < head_end ? head_end : n;
    if (limit - i >= 5 && memcmp(p + i, "data:", 5) == 0)
        return "file";
    return "text";
}

static int measure(const uint8_t *data, Py_ssize_t size, PyObject *text_type, int want_type, long long *out_size,
                   PyObject **out_type, int ascii_fast) {
    AnyValue v;
    const char *type = NULL;
    if (parse_any(data, size, &v) != OK)
        return BAIL;
    *out_type = NULL;
    switch (v.kind) {
    case 1:
        *out_size = v.size;
        if (want_type && ascii_fast && (type = ascii_text_type(v.data, v.size)) != NULL)
            break;
        if (want_type) {
            PyObject *text = utf8(v.data, v.size);
            if (!text)
                return BAIL;
            *out_type = PyObject_CallOneArg(text_type, text);
            Py_DECREF(text);
            return *out_type ? OK : ERROR;
        }
        return OK;
    case 7:
        *out_size = v.size;
        type = "binary";
        break;
    case 5:
    case 6: /* AnyValue.ByteSize(): its tag, the length varint and the payload */
        *out_size = 1 + varint_size((uint64_t)v.size) + v.size;
        type = "json";
        break;
    case 2:
        *out_size = 1;
        type = "boolean";
        break;
    case 0:
        *out_size = 0;
        type = "empty";
        break;
    case 3:
    case 4: { /* len(str(value)) */
        PyObject *number;
        if (v.kind == 3) {
            number = PyLong_FromLongLong((long long)(int64_t)v.varint);
        } else {
            double d;
            uint64_t bits = fixed64(v.data);
            memcpy(&d, &bits, sizeof d);
            number = PyFloat_FromDouble(d);
        }
        if (!number)
            return ERROR;
        PyObject *text = PyObject_Str(number);
        Py_DECREF(number);
        if (!text)
            return ERROR;
        *out_size = PyUnicode_GET_LENGTH(text);
        Py_DECREF(text);
        type = "number";
        break;
    }
    default:
        return BAIL;
    }
    if (want_type) {
        *out_type = PyUnicode_InternFromString(type);
        if (!*out_type)
            return ERROR;
    }
    return OK;
}

static int add_content(Side *side, const uint8_t *data, Py_ssize_t size, PyObject *text_type, int ascii_fast) {
    long long measured;
    PyObject *type;
    int status = measure(data, size, text_type, !side->seen, &measured, &type, ascii_fast);
    if (status != OK)
        return status;
    side->size += measured;
    if (!side->seen) {
        side->seen = 1;
        side->type = type;
    }
    return OK;
}

static PyObject *side_size(Side *side);
static PyObject *side_type(Side *side);

/* -- records: the normalizer's ``_record`` for the common span, in C ------------------------
 *
 * Why. After the scan, turning a span's tuple into a ``SpanRecord`` in Python (``_record`` and
 * its helpers: about 40 attribute stores, 30 dict lookups and a dozen calls per span) cost three
 * times the scan itself, and the dataclass constructor alone (46 fields) a fifth of it (issue 7).
 *
 * Contract (``Normalizer._record`` is the reference; test_spanscan.py compares whole batches):
 * - ``recipe(config)`` (once per normalizer, see ``normalize._recipe``) returns a capsule with
 *   the record class, its fields' slot offsets and defaults, the category tables and the concept
 *   names. A record is allocated and every slot filled here, without the dataclass ``__init__``.
 * - A span is built here only when it is plain: no events, valid ids and times, a service name
 *   that is text or absent, text values for the text concepts, an int for the token counts, a
 *   bool for streaming, and not an OpenInference workflow wrapper. Any other span is handed back
 *   as the scan's tuple and the Python ``_record`` builds it. Nothing is ever half built.
 * - Names and ids go through the sanitizer exactly as in Python: its ``_idents`` and ``_users``
 *   memos are read here, and on a miss (or a remembered redaction, which must be counted) its own
 *   ``ident`` and ``user`` are called. The rare parts call the normalizer's own methods on the
 *   record: ``_our_namespace``, ``_misc``, ``_sizes`` (a MIME type declared), ``_status`` (an error)
 *   and ``_invocation_parameters``.
 */

#define MAX_TOKENS (1LL << 40)
#define MAX_DURATION_NS ((uint64_t)2147483647 * 1000000)

enum {
    F_TENANT_ID, F_TRACE_ID, F_SPAN_ID, F_PARENT_SPAN_ID, F_CATEGORY, F_NAME, F_START_NS, F_END_NS, F_STATUS,
    F_SOURCE, F_SERVICE_NAME, F_AGENT_ID, F_AGENT_NAME, F_AGENT_DESCRIPTION, F_AGENT_VERSION, F_USER_ID,
    F_SESSION_ID, F_OPERATION, F_MODEL, F_PROVIDER, F_TOOL_NAME, F_INPUT_TOKENS, F_OUTPUT_TOKENS, F_STREAMING,
    F_FINISH_REASON, F_WORKFLOW_NAME, F_INPUT_SIZE, F_OUTPUT_SIZE, F_INPUT_TYPE, F_OUTPUT_TYPE, F_COUNT
};
static const char *FIELD_NAMES[F_COUNT] = {
    "tenant_id", "trace_id", "span_id", "parent_span_id", "category", "name", "start_ns", "end_ns", "status",
    "source", "service_name", "agent_id", "agent_name", "agent_description", "agent_version", "user_id",
    "session_id", "operation", "model", "provider", "tool_name", "input_tokens", "output_tokens", "streaming",
    "finish_reason", "workflow_name", "input_size", "output_size", "input_type", "output_type",
};

/* found's concept names, in the order of ``normalize._RECIPE_KEYS`` */
enum {
    K_OPERATION, K_LEGACY_REQUEST_TYPE, K_OPENINFERENCE_KIND, K_TRACELOOP_KIND, K_TRACELOOP_ENTITY, K_AGENT_NAME,
    K_AGENT_ID, K_AGENT_DESCRIPTION, K_AGENT_VERSION, K_TOOL_NAME, K_USER_ID, K_SESSION_ID, K_WORKFLOW, K_MODEL,
    K_PROVIDER, K_INPUT_TOKENS, K_OUTPUT_TOKENS, K_STREAMING, K_FINISH_REASON, K_INVOCATION_PARAMETERS,
    K_ERROR_TYPE, K_INPUT_MIME, K_OUTPUT_MIME, K_COUNT
};

enum { C_AGENT, C_TOOL, C_LLM, C_CHAIN, C_OTHER, C_COUNT };

/* Attribute key -> the normalizer's memo entry for it (``Normalizer._classify``), by the key's
 * bytes: every attribute of every span is looked up, and decoding and hashing a str per key was
 * a tenth of the scan. Filled up to half its slots, never emptied (the memo entry of a key never
 * changes for a normalizer); keys longer than KEY_CACHE_MAX_KEY are not kept. */
#define KEY_CACHE_SLOTS 4096
#define KEY_CACHE_MAX_KEY 128
typedef struct {
    uint64_t hash;
    Py_ssize_t size;
    char *key; /* NULL: empty slot */
    PyObject *info;
} KeySlot;
typedef struct {
    KeySlot slots[KEY_CACHE_SLOTS];
    int used;
} KeyCache;

static uint64_t fnv1a(const uint8_t *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static KeySlot *key_slot(KeyCache *cache, const uint8_t *key, Py_ssize_t size, uint64_t hash) {
    for (uint64_t i = hash;; i++) { /* the table is at most half full: an empty slot ends the probe */
        KeySlot *slot = &cache->slots[i & (KEY_CACHE_SLOTS - 1)];
        if (!slot->key || (slot->hash == hash && slot->size == size && memcmp(slot->key, key, size) == 0))
            return slot;
    }
}

static void key_cache_put(KeyCache *cache, KeySlot *slot, const uint8_t *key, Py_ssize_t size, uint64_t hash,
                          PyObject *info) {
    if (slot->key || size > KEY_CACHE_MAX_KEY || cache->used >= KEY_CACHE_SLOTS / 2)
        return;
    char *copy = PyMem_Malloc(size ? size : 1);
    if (!copy)
        return; /* not cached: nothing is lost */
    memcpy(copy, key, size);
    slot->hash = hash;
    slot->size = size;
    slot->key = copy;
    slot->info = Py_NewRef(info);
    cache->used++;
}

static void key_cache_free(KeyCache *cache) {
    if (!cache)
        return;
    for (int i = 0; i < KEY_CACHE_SLOTS; i++) {
        if (cache->slots[i].key) {
            PyMem_Free(cache->slots[i].key);
            Py_DECREF(cache->slots[i].info);
        }
    }
    PyMem_Free(cache);
}

typedef struct {
    KeyCache *keys_seen;
    PyObject *text_type; /* sanitize.text_type, which ascii_text_type stands in for */
    PyTypeObject *record_type;
    Py_ssize_t slots;           /* every slot of the record class */
    Py_ssize_t *offsets;        /* per slot */
    PyObject **defaults;        /* per slot: the default (NULL: call the factory) */
    PyObject **factories;       /* per slot: the default factory, or NULL */
    Py_ssize_t field[F_COUNT];  /* offsets of the fields set here */
    PyObject *categories[C_COUNT];
    PyObject *operation_category, *openinference_category, *traceloop_category; /* dicts */
    PyObject *our_concepts, *misc_concepts;                                     /* frozensets */
    PyObject *keys[K_COUNT];
    PyObject *success, *unnamed, *invoke_agent, *execute_tool, *dot_agent, *dot_tool, *empty, *zero;
    PyObject *sources[5]; /* agent_otel, openinference, traceloop, genai, otel */
    PyObject *m_lower, *m_upper, *m_idents, *m_users, *m_ident, *m_user, *m_text, *m_sanitizer;
    PyObject *m_our_namespace, *m_misc, *m_sizes, *m_status, *m_invocation_parameters;
} Recipe;

static void recipe_free(Recipe *r) {
    if (!r)
        return;
    key_cache_free(r->keys_seen);
    Py_XDECREF(r->text_type);
    Py_XDECREF(r->record_type);
    for (Py_ssize_t i = 0; i < r->slots; i++) {
        if (r->defaults)
            Py_XDECREF(r->defaults[i]);
        if (r->factories)
            Py_XDECREF(r->factories[i]);
    }
    PyMem_Free(r->offsets);
    PyMem_Free(r->defaults);
    PyMem_Free(r->factories);
    for (int i = 0; i < C_COUNT; i++)
        Py_XDECREF(r->categories[i]);
    Py_XDECREF(r->operation_category);
    Py_XDECREF(r->openinference_category);
    Py_XDECREF(r->traceloop_category);
    Py_XDECREF(r->our_concepts);
    Py_XDECREF(r->misc_concepts);
    for (int i = 0; i < K_COUNT; i++)
        Py_XDECREF(r->keys[i]);
    PyObject **owned[] = {&r->success, &r->unnamed, &r->invoke_agent, &r->execute_tool, &r->dot_agent, &r->dot_tool,
                          &r->empty, &r->zero, &r->sources[0], &r->sources[1], &r->sources[2], &r->sources[3],
                          &r->sources[4], &r->m_lower, &r->m_upper, &r->m_idents, &r->m_users, &r->m_ident,
                          &r->m_user, &r->m_text, &r->m_sanitizer, &r->m_our_namespace, &r->m_misc, &r->m_sizes,
                          &r->m_status, &r->m_invocation_parameters};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        Py_XDECREF(*owned[i]);
    PyMem_Free(r);
}

static void recipe_capsule_free(PyObject *capsule) {
    recipe_free((Recipe *)PyCapsule_GetPointer(capsule, "agent_otel.recipe"));
}

/* The slot offset of a record class's field (a member descriptor of __slots__). */
static int slot_offset(PyTypeObject *type, PyObject *name, Py_ssize_t *offset) {
    PyObject *descr = PyObject_GetAttr((PyObject *)type, name);
    if (!descr)
        return -1;
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        Py_DECREF(descr);
        PyErr_Format(PyExc_TypeError, "field %R is not a __slots__ member", name);
        return -1;
    }
    *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    Py_DECREF(descr);
    return 0;
}

static PyObject *interned(const char *text) { return PyUnicode_InternFromString(text); }

/* recipe(config) -> capsule; config: see normalize._recipe. */
static PyObject *recipe(PyObject *module, PyObject *config) {
    if (!PyDict_Check(config)) {
        PyErr_SetString(PyExc_TypeError, "recipe() takes a dict");
        return NULL;
    }
    Recipe *r = PyMem_Calloc(1, sizeof(Recipe));
    if (!r)
        return PyErr_NoMemory();
#define ITEM(name) PyDict_GetItemString(config, name) /* borrowed; NULL when absent */
    PyObject *type = ITEM("record_type"), *fields = ITEM("fields"), *categories = ITEM("categories");
    PyObject *text_type_fn = ITEM("text_type");
    PyObject *maps = ITEM("category_maps"), *sets = ITEM("concept_sets"), *keys = ITEM("keys");
    if (!type || !PyType_Check(type) || !fields || !PyTuple_Check(fields) || !categories ||
        !PyTuple_Check(categories) || PyTuple_GET_SIZE(categories) != C_COUNT || !maps || !PyTuple_Check(maps) ||
        PyTuple_GET_SIZE(maps) != 3 || !sets || !PyTuple_Check(sets) || PyTuple_GET_SIZE(sets) != 2 || !keys ||
        !PyTuple_Check(keys) || PyTuple_GET_SIZE(keys) != K_COUNT) {
        PyErr_SetString(PyExc_ValueError, "recipe(): incomplete config");
        goto fail;
    }
    if (!text_type_fn || !(r->keys_seen = PyMem_Calloc(1, sizeof(KeyCache)))) {
        PyErr_SetString(PyExc_ValueError, "recipe(): incomplete config");
        goto fail;
    }
    r->text_type = Py_NewRef(text_type_fn);
    r->record_type = (PyTypeObject *)Py_NewRef(type);
    r->slots = PyTuple_GET_SIZE(fields);
    r->offsets = PyMem_Calloc(r->slots, sizeof(Py_ssize_t));
    r->defaults = PyMem_Calloc(r->slots, sizeof(PyObject *));
    r->factories = PyMem_Calloc(r->slots, sizeof(PyObject *));
    if (!r->offsets || !r->defaults || !r->factories) {
        PyErr_NoMemory();
        goto fail;
    }
    for (int f = 0; f < F_COUNT; f++)
        r->field[f] = -1;
    /* fields: ((name, default, factory), ...) covering every slot; exactly one of default/factory */
    for (Py_ssize_t i = 0; i < r->slots; i++) {
        PyObject *entry = PyTuple_GET_ITEM(fields, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3) {
            PyErr_SetString(PyExc_ValueError, "recipe(): a field is (name, default, factory)");
            goto fail;
        }
        PyObject *name = PyTuple_GET_ITEM(entry, 0), *factory = PyTuple_GET_ITEM(entry, 2);
        if (slot_offset(r->record_type, name, &r->offsets[i]) < 0)
            goto fail;
        if (factory != Py_None)
            r->factories[i] = Py_NewRef(factory);
        else
            r->defaults[i] = Py_NewRef(PyTuple_GET_ITEM(entry, 1));
        for (int f = 0; f < F_COUNT; f++)
            if (PyUnicode_CompareWithASCIIString(name, FIELD_NAMES[f]) == 0)
                r->field[f] = r->offsets[i];
    }
    for (int f = 0; f < F_COUNT; f++) {
        if (r->field[f] < 0) {
            PyErr_Format(PyExc_ValueError, "recipe(): the record has no field %s", FIELD_NAMES[f]);
            goto fail;
        }
    }
    for (int c = 0; c < C_COUNT; c++)
        r->categories[c] = Py_NewRef(PyTuple_GET_ITEM(categories, c));
    r->operation_category = Py_NewRef(PyTuple_GET_ITEM(maps, 0));
    r->openinference_category = Py_NewRef(PyTuple_GET_ITEM(maps, 1));
    r->traceloop_category = Py_NewRef(PyTuple_GET_ITEM(maps, 2));
    r->our_concepts = Py_NewRef(PyTuple_GET_ITEM(sets, 0));
    r->misc_concepts = Py_NewRef(PyTuple_GET_ITEM(sets, 1));
    if (!PyDict_Check(r->operation_category) || !PyDict_Check(r->openinference_category) ||
        !PyDict_Check(r->traceloop_category) || !PyAnySet_Check(r->our_concepts) || !PyAnySet_Check(r->misc_concepts)) {
        PyErr_SetString(PyExc_TypeError, "recipe(): category maps are dicts, concept sets are sets");
        goto fail;
    }
    for (int k = 0; k < K_COUNT; k++) {
        PyObject *key = PyTuple_GET_ITEM(keys, k);
        if (!PyUnicode_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "recipe(): keys are str");
            goto fail;
        }
        r->keys[k] = Py_NewRef(key);
    }
#undef ITEM
    const char *texts[] = {"success", "unnamed", "invoke_agent", "execute_tool", ".agent", ".tool", "",
                           "agent_otel", "openinference", "traceloop", "genai", "otel", "lower", "upper",
                           "_idents", "_users", "ident", "user", "text", "sanitizer", "_our_namespace", "_misc",
                           "_sizes", "_status", "_invocation_parameters"};
    PyObject **targets[] = {&r->success, &r->unnamed, &r->invoke_agent, &r->execute_tool, &r->dot_agent,
                            &r->dot_tool, &r->empty, &r->sources[0], &r->sources[1], &r->sources[2],
                            &r->sources[3], &r->sources[4], &r->m_lower, &r->m_upper, &r->m_idents, &r->m_users,
                            &r->m_ident, &r->m_user, &r->m_text, &r->m_sanitizer, &r->m_our_namespace, &r->m_misc,
                            &r->m_sizes, &r->m_status, &r->m_invocation_parameters};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (!(*targets[i] = interned(texts[i])))
            goto fail;
    }
    if (!(r->zero = PyLong_FromLong(0)))
        goto fail;
    PyObject *capsule = PyCapsule_New(r, "agent_otel.recipe", recipe_capsule_free);
    if (!capsule)
        goto fail;
    return capsule;
fail:
    recipe_free(r);
    return NULL;
}

/* What one scan call needs besides the recipe: the normalizer, its sanitizer and memos. */
typedef struct {
    Recipe *r;
    PyObject *normalizer, *sanitizer, *idents, *users, *tenant_id, *counts;
    long long earliest, latest; /* start times ``_invalid`` accepts: now - max age .. now + max future */
} Build;

static void set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value) { /* steals value */
    PyObject **slot = (PyObject **)((char *)obj + offset);
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
}

static PyObject *get_slot(PyObject *obj, Py_ssize_t offset) { /* borrowed */
    return *(PyObject **)((char *)obj + offset);
}

/* A record with every slot at its default, as the dataclass constructor would leave it. */
static PyObject *new_record(Recipe *r) {
    PyObject *obj = r->record_type->tp_alloc(r->record_type, 0);
    if (!obj)
        return NULL;
    for (Py_ssize_t i = 0; i < r->slots; i++) {
        PyObject *value = r->defaults[i] ? Py_NewRef(r->defaults[i]) : PyObject_CallNoArgs(r->factories[i]);
        if (!value) {
            Py_DECREF(obj);
            return NULL;
        }
        set_slot(obj, r->offsets[i], value);
    }
    return obj;
}

/* The sanitizer's ``ident`` / ``user``: a remembered result without redactions is taken from the
 * memo; anything else goes through the Python method (which counts and remembers). */
static PyObject *sanitized(Build *b, PyObject *memo, PyObject *method, PyObject *value) {
    PyObject *hit = PyDict_GetItemWithError(memo, value); /* borrowed */
    if (hit && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2) {
        PyObject *fired = PyTuple_GET_ITEM(hit, 1);
        if (PyTuple_CheckExact(fired) && PyTuple_GET_SIZE(fired) == 0)
            return Py_NewRef(PyTuple_GET_ITEM(hit, 0));
    }
    if (!hit && PyErr_Occurred())
        return NULL;
    return PyObject_CallMethodObjArgs(b->sanitizer, method, value, b->counts, NULL);
}

static PyObject *ident(Build *b, PyObject *value) { return sanitized(b, b->idents, b->r->m_ident, value); }

/* A found concept that must be text here: NULL when absent; BAIL (via *bail) when not a str. */
static PyObject *text_of(PyObject *found, PyObject *key, int *bail) {
    PyObject *value = PyDict_GetItemWithError(found, key); /* borrowed */
    if (value && !PyUnicode_CheckExact(value)) {
        *bail = 1;
        return NULL;
    }
    return value;
}

/* ``_strip_affixes``: "prefix rest" -> "rest", "rest<suffix>" -> "rest", else the name. */
static PyObject *strip_affixes(PyObject *name, PyObject *prefix, PyObject *suffix) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(name), p = PyUnicode_GET_LENGTH(prefix), s = PyUnicode_GET_LENGTH(suffix);
    if (n > p && PyUnicode_Tailmatch(name, prefix, 0, p, -1) == 1 && PyUnicode_READ_CHAR(name, p) == ' ')
        return PyUnicode_Substring(name, p + 1, n);
    if (PyUnicode_Tailmatch(name, suffix, 0, n, 1) == 1)
        return PyUnicode_Substring(name, 0, n - s);
    return Py_NewRef(name);
}

static int starts_or_ends(PyObject *name, PyObject *prefix, PyObject *suffix) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    return PyUnicode_Tailmatch(name, prefix, 0, n, -1) == 1 || PyUnicode_Tailmatch(name, suffix, 0, n, 1) == 1;
}

static PyObject *hex(const uint8_t *data, Py_ssize_t size) {
    static const char digits[] = "0123456789abcdef";
    PyObject *out = PyUnicode_New(size * 2, 127);
    if (!out)
        return NULL;
    Py_UCS1 *p = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = 0; i < size; i++) {
        p[2 * i] = digits[data[i] >> 4];
        p[2 * i + 1] = digits[data[i] & 15];
    }
    return out;
}

static int nonzero(const uint8_t *data, Py_ssize_t size) {
    for (Py_ssize_t i = 0; i < size; i++)
        if (data[i])
            return 1;
    return 0;
}

/* ``table[value]`` of a text concept (upper-cased first with ``upper``): 1 with *category set
 * (borrowed), 0 when the concept is absent, not text (*bail) or not in the table, -1 on error. */
static int kind_category(Recipe *r, PyObject *found, int key, PyObject *table, int upper, int *bail,
                         PyObject **category) {
    PyObject *kind = text_of(found, r->keys[key], bail);
    if (!kind || *bail)
        return 0;
    PyObject *lookup = upper ? PyObject_CallMethodNoArgs(kind, r->m_upper) : Py_NewRef(kind);
    if (!lookup)
        return -1;
    *category = PyDict_GetItemWithError(table, lookup);
    Py_DECREF(lookup);
    return *category ? 1 : (PyErr_Occurred() ? -1 : 0);
}

/* ``_category``; NULL with *bail when a kind is not text. Borrowed reference. */
static PyObject *category_of(Recipe *r, PyObject *found, PyObject *raw_name, int *bail) {
    PyObject *by_operation = NULL, *category = NULL;
    if (kind_category(r, found, K_OPERATION, r->operation_category, 0, bail, &by_operation) < 0 || *bail)
        return NULL;
    int legacy = PyDict_Contains(found, r->keys[K_LEGACY_REQUEST_TYPE]);
    if (legacy < 0)
        return NULL;
    if (by_operation && !legacy)
        return by_operation;
    int hit = kind_category(r, found, K_OPENINFERENCE_KIND, r->openinference_category, 1, bail, &category);
    if (hit == 0 && !*bail)
        hit = kind_category(r, found, K_TRACELOOP_KIND, r->traceloop_category, 0, bail, &category);
    if (hit == 0 && !*bail && by_operation)
        return by_operation;
    if (hit == 0 && !*bail)
        hit = kind_category(r, found, K_LEGACY_REQUEST_TYPE, r->operation_category, 0, bail, &category);
    if (hit < 0 || *bail)
        return NULL;
    if (hit)
        return category;
    if (starts_or_ends(raw_name, r->invoke_agent, r->dot_agent))
        return r->categories[C_AGENT];
    if (starts_or_ends(raw_name, r->execute_tool, r->dot_tool))
        return r->categories[C_TOOL];
    int model = PyDict_Contains(found, r->keys[K_MODEL]), provider = PyDict_Contains(found, r->keys[K_PROVIDER]);
    if (model < 0 || provider < 0)
        return NULL;
    return model && provider ? r->categories[C_LLM] : r->categories[C_OTHER];
}

/* Whether any key of found is in the set; -1 on error. */
static int any_in(PyObject *found, PyObject *set) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(found, &pos, &key, &value)) {
        int hit = PySet_Contains(set, key);
        if (hit)
            return hit;
    }
    return 0;
}

/* Sets field ``f`` to the sanitized text of concept ``k`` when present: ident, or user. */
static int set_sanitized(Build *b, PyObject *record, int f, PyObject *value, int as_user) {
    if (!value)
        return OK;
    Recipe *r = b->r;
    PyObject *clean = as_user ? sanitized(b, b->users, r->m_user, value) : ident(b, value);
    if (!clean)
        return ERROR;
    set_slot(record, r->field[f], clean);
    return OK;
}

/* A token count as ``_as_int(value) or 0``: an int in range is kept, another int is 0. */
static PyObject *token_count(Recipe *r, PyObject *value) {
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    return Py_NewRef(!overflow && v >= 0 && v <= MAX_TOKENS ? value : r->zero);
}

/* Calls normalizer.<method>(record, ...args) and drops the result. */
static int call(Build *b, PyObject *method, PyObject *record, PyObject *a, PyObject *c) {
    PyObject *result = c ? PyObject_CallMethodObjArgs(b->normalizer, method, record, a, c, NULL)
                         : PyObject_CallMethodObjArgs(b->normalizer, method, record, a, NULL);
    if (!result)
        return ERROR;
    Py_DECREF(result);
    return OK;
}

typedef struct {
    const uint8_t *trace_id, *span_id, *parent;
    Py_ssize_t trace_id_size, span_id_size, parent_size;
    uint64_t start, end;
    long long code;
    PyObject *name, *message, *found, *service; /* borrowed; service: already sanitized */
    Side *input, *output;
} Scanned;

/* ``Normalizer._record`` for a plain span: OK with *out set, BAIL (left to Python), or ERROR. */
static int build_record(Build *b, Scanned *s, PyObject **out) {
    Recipe *r = b->r;
    PyObject *found = s->found;
    int bail = 0;
    *out = NULL;
    /* valid ids and times only (``_invalid`` names the reason of the others, in Python) */
    if (s->trace_id_size != 16 || !nonzero(s->trace_id, 16) || s->span_id_size != 8 || !nonzero(s->span_id, 8) ||
        (s->parent_size && (s->parent_size != 8 || !nonzero(s->parent, 8))) || s->start == 0 || s->end == 0 ||
        s->end < s->start || s->end - s->start > MAX_DURATION_NS || s->start > (uint64_t)b->latest ||
        (long long)s->start < b->earliest)
        return BAIL;
    /* value types this path reads directly */
    /* (every check that can hand the span back to Python comes before the first call that counts
     * a redaction, so a span is never counted twice) */
    static const int texts[] = {K_OPERATION, K_LEGACY_REQUEST_TYPE, K_OPENINFERENCE_KIND, K_TRACELOOP_KIND,
                                K_TRACELOOP_ENTITY, K_AGENT_NAME, K_AGENT_ID, K_AGENT_DESCRIPTION, K_AGENT_VERSION,
                                K_TOOL_NAME, K_USER_ID, K_SESSION_ID, K_WORKFLOW, K_MODEL, K_PROVIDER,
                                K_FINISH_REASON};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        text_of(found, r->keys[texts[i]], &bail);
        if (bail)
            return BAIL;
    }
    PyObject *tokens_in = PyDict_GetItemWithError(found, r->keys[K_INPUT_TOKENS]);
    PyObject *tokens_out = PyDict_GetItemWithError(found, r->keys[K_OUTPUT_TOKENS]);
    PyObject *streaming = PyDict_GetItemWithError(found, r->keys[K_STREAMING]);
    if (PyErr_Occurred())
        return ERROR;
    if ((tokens_in && !PyLong_CheckExact(tokens_in)) || (tokens_out && !PyLong_CheckExact(tokens_out)) ||
        (streaming && !PyBool_Check(streaming)))
        return BAIL;
    PyObject *raw_name = PyUnicode_GET_LENGTH(s->name) ? s->name : r->unnamed;
    PyObject *category = category_of(r, found, raw_name, &bail);
    if (bail)
        return BAIL;
    if (!category)
        return ERROR;
    PyObject *agent_name = PyDict_GetItemWithError(found, r->keys[K_AGENT_NAME]); /* borrowed */
    if (category == r->categories[C_AGENT] && !agent_name) {
        int oi = PyDict_Contains(found, r->keys[K_OPENINFERENCE_KIND]);
        if (oi < 0)
            return ERROR;
        if (oi)
            return BAIL; /* an OpenInference workflow wrapper: Python's rule */
    }
    int our = any_in(found, r->our_concepts), misc = any_in(found, r->misc_concepts);
    if (our < 0 || misc < 0)
        return ERROR;

    PyObject *record = new_record(r);
    if (!record)
        return ERROR;
    PyObject *name = ident(b, raw_name);
    PyObject *trace_hex = hex(s->trace_id, 16), *span_hex = hex(s->span_id, 8);
    PyObject *parent_hex = s->parent_size ? hex(s->parent, 8) : Py_NewRef(Py_None);
    PyObject *start = PyLong_FromUnsignedLongLong(s->start), *end = PyLong_FromUnsignedLongLong(s->end);
    if (!name || !trace_hex || !span_hex || !parent_hex || !start || !end) {
        Py_XDECREF(name);
        Py_XDECREF(trace_hex);
        Py_XDECREF(span_hex);
        Py_XDECREF(parent_hex);
        Py_XDECREF(start);
        Py_XDECREF(end);
        goto done;
    }
    set_slot(record, r->field[F_TENANT_ID], Py_NewRef(b->tenant_id));
    set_slot(record, r->field[F_TRACE_ID], trace_hex);
    set_slot(record, r->field[F_SPAN_ID], span_hex);
    set_slot(record, r->field[F_PARENT_SPAN_ID], parent_hex);
    set_slot(record, r->field[F_CATEGORY], Py_NewRef(category));
    set_slot(record, r->field[F_NAME], name);
    set_slot(record, r->field[F_START_NS], start);
    set_slot(record, r->field[F_END_NS], end);
    set_slot(record, r->field[F_STATUS], Py_NewRef(r->success));
    set_slot(record, r->field[F_SERVICE_NAME], Py_NewRef(s->service));
    /* _source */
    int source;
    if (our)
        source = 0;
    else if ((source = PyDict_Contains(found, r->keys[K_OPENINFERENCE_KIND])) != 0)
        source = source < 0 ? -1 : 1;
    else {
        int tl = PyDict_Contains(found, r->keys[K_TRACELOOP_KIND]), lg = PyDict_Contains(found, r->keys[K_LEGACY_REQUEST_TYPE]);
        int en = PyDict_Contains(found, r->keys[K_TRACELOOP_ENTITY]), op = PyDict_Contains(found, r->keys[K_OPERATION]);
        int pr = PyDict_Contains(found, r->keys[K_PROVIDER]);
        if (tl < 0 || lg < 0 || en < 0 || op < 0 || pr < 0)
            source = -1;
        else
            source = (tl || lg || en) ? 2 : (op || pr) ? 3 : 4;
    }
    if (source < 0)
        goto done;
    set_slot(record, r->field[F_SOURCE], Py_NewRef(r->sources[source]));

    /* _identity */
    PyObject *derived = NULL; /* a new reference when the agent name is derived */
    if (category == r->categories[C_AGENT] && !agent_name) {
        PyObject *entity = PyDict_GetItemWithError(found, r->keys[K_TRACELOOP_ENTITY]);
        derived = entity ? Py_NewRef(entity) : strip_affixes(raw_name, r->invoke_agent, r->dot_agent);
        if (!derived)
            goto done;
        if (PyUnicode_GET_LENGTH(derived) == 0 || PyUnicode_Compare(derived, r->invoke_agent) == 0)
            Py_SETREF(derived, Py_NewRef(s->service)); /* the (sanitized) service name, or None */
        agent_name = derived;
    }
    if (agent_name && agent_name != Py_None && PyUnicode_GET_LENGTH(agent_name)) {
        if (set_sanitized(b, record, F_AGENT_NAME, agent_name, 0) != OK) {
            Py_XDECREF(derived);
            goto done;
        }
    }
    Py_XDECREF(derived);
    PyObject *agent_id = PyDict_GetItemWithError(found, r->keys[K_AGENT_ID]);
    if (agent_id) {
        if (set_sanitized(b, record, F_AGENT_ID, agent_id, 0) != OK)
            goto done;
    } else {
        PyObject *name_kept = get_slot(record, r->field[F_AGENT_NAME]);
        if (PyUnicode_Check(name_kept) && PyUnicode_GET_LENGTH(name_kept))
            set_slot(record, r->field[F_AGENT_ID], Py_NewRef(name_kept));
    }
    if (category == r->categories[C_AGENT]) {
        PyObject *description = PyDict_GetItemWithError(found, r->keys[K_AGENT_DESCRIPTION]);
        if (description) {
            PyObject *clean = PyObject_CallMethodObjArgs(b->sanitizer, r->m_text, description, b->counts, NULL);
            if (!clean)
                goto done;
            set_slot(record, r->field[F_AGENT_DESCRIPTION], clean);
        }
        if (set_sanitized(b, record, F_AGENT_VERSION, PyDict_GetItemWithError(found, r->keys[K_AGENT_VERSION]), 0) != OK)
            goto done;
    } else if (category == r->categories[C_TOOL]) {
        PyObject *tool = PyDict_GetItemWithError(found, r->keys[K_TOOL_NAME]);
        if (!tool)
            tool = PyDict_GetItemWithError(found, r->keys[K_TRACELOOP_ENTITY]);
        PyObject *stripped = tool ? Py_NewRef(tool) : strip_affixes(raw_name, r->execute_tool, r->dot_tool);
        if (!stripped)
            goto done;
        int failed = set_sanitized(b, record, F_TOOL_NAME, stripped, 0);
        Py_DECREF(stripped);
        if (failed != OK)
            goto done;
    }
    if (set_sanitized(b, record, F_USER_ID, PyDict_GetItemWithError(found, r->keys[K_USER_ID]), 1) != OK ||
        set_sanitized(b, record, F_SESSION_ID, PyDict_GetItemWithError(found, r->keys[K_SESSION_ID]), 1) != OK ||
        set_sanitized(b, record, F_WORKFLOW_NAME, PyDict_GetItemWithError(found, r->keys[K_WORKFLOW]), 0) != OK)
        goto done;

    /* _llm */
    PyObject *operation = PyDict_GetItemWithError(found, r->keys[K_OPERATION]);
    if (!operation)
        operation = PyDict_GetItemWithError(found, r->keys[K_LEGACY_REQUEST_TYPE]);
    if (set_sanitized(b, record, F_OPERATION, operation, 0) != OK ||
        set_sanitized(b, record, F_MODEL, PyDict_GetItemWithError(found, r->keys[K_MODEL]), 0) != OK)
        goto done;
    PyObject *provider = PyDict_GetItemWithError(found, r->keys[K_PROVIDER]);
    if (provider) {
        PyObject *clean = ident(b, provider);
        if (!clean)
            goto done;
        PyObject *lowered = PyObject_CallMethodNoArgs(clean, r->m_lower); /* scrub first, as in Python */
        Py_DECREF(clean);
        if (!lowered)
            goto done;
        set_slot(record, r->field[F_PROVIDER], lowered);
    }
    if (tokens_in) {
        PyObject *count = token_count(r, tokens_in);
        if (!count)
            goto done;
        set_slot(record, r->field[F_INPUT_TOKENS], count);
    }
    if (tokens_out) {
        PyObject *count = token_count(r, tokens_out);
        if (!count)
            goto done;
        set_slot(record, r->field[F_OUTPUT_TOKENS], count);
    }
    if (streaming)
        set_slot(record, r->field[F_STREAMING], Py_NewRef(streaming));
    PyObject *finish = PyDict_GetItemWithError(found, r->keys[K_FINISH_REASON]);
    if (finish) {
        PyObject *clean = ident(b, finish);
        if (!clean)
            goto done;
        if (PyUnicode_GET_LENGTH(clean) > 64)
            Py_SETREF(clean, PyUnicode_Substring(clean, 0, 64));
        if (!clean)
            goto done;
        set_slot(record, r->field[F_FINISH_REASON], clean);
    }
    PyObject *parameters = PyDict_GetItemWithError(found, r->keys[K_INVOCATION_PARAMETERS]);
    if (parameters && (get_slot(record, r->field[F_MODEL]) == Py_None || get_slot(record, r->field[F_STREAMING]) == Py_None)) {
        if (call(b, r->m_invocation_parameters, record, parameters, b->counts) != OK)
            goto done;
    }

    /* _ours */
    if (our && call(b, r->m_our_namespace, record, found, b->counts) != OK)
        goto done;
    if (misc && call(b, r->m_misc, record, found, b->counts) != OK)
        goto done;
    int input_mime = PyDict_Contains(found, r->keys[K_INPUT_MIME]), output_mime = PyDict_Contains(found, r->keys[K_OUTPUT_MIME]);
    if (input_mime < 0 || output_mime < 0)
        goto done;
    PyObject *input_size = side_size(s->input), *output_size = side_size(s->output);
    PyObject *input_type = side_type(s->input), *output_type = side_type(s->output);
    if (!input_size || !output_size) {
        Py_XDECREF(input_size);
        Py_XDECREF(output_size);
        Py_DECREF(input_type);
        Py_DECREF(output_type);
        goto done;
    }
    if (input_mime || output_mime) {
        PyObject *result = PyObject_CallMethodObjArgs(b->normalizer, r->m_sizes, record, found, input_size, input_type,
                                                      output_size, output_type, NULL);
        Py_DECREF(input_size);
        Py_DECREF(output_size);
        Py_DECREF(input_type);
        Py_DECREF(output_type);
        if (!result)
            goto done;
        Py_DECREF(result);
    } else {
        const int sides[4][2] = {{F_INPUT_SIZE, 0}, {F_OUTPUT_SIZE, 1}, {F_INPUT_TYPE, 2}, {F_OUTPUT_TYPE, 3}};
        PyObject *values[4] = {input_size, output_size, input_type, output_type};
        for (int i = 0; i < 4; i++) {
            if (get_slot(record, r->field[sides[i][0]]) == Py_None)
                set_slot(record, r->field[sides[i][0]], values[sides[i][1]]);
            else
                Py_DECREF(values[sides[i][1]]);
        }
    }

    /* _status (no events here, so no exception event) */
    int error_type = PyDict_Contains(found, r->keys[K_ERROR_TYPE]);
    if (error_type < 0)
        goto done;
    if (s->code == 2 || error_type) {
        PyObject *pair = Py_BuildValue("(LO)", s->code, s->message);
        if (!pair)
            goto done;
        PyObject *result =
            PyObject_CallMethodObjArgs(b->normalizer, r->m_status, record, pair, found, Py_None, b->counts, NULL);
        Py_DECREF(pair);
        if (!result)
            goto done;
        Py_DECREF(result);
    }
    if (PyErr_Occurred())
        goto done;
    *out = record;
    return OK;
done: /* only failures of Python calls lead here: their exception propagates */
    Py_DECREF(record);
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_SystemError, "_spanscan: a record failed without an exception");
    return ERROR;
}

/* -- spans ---------------------------------------------------------------------------------- */

typedef struct {
    PyObject *kinds;
    PyObject *classify;
    PyObject *text_type;
    PyObject *input;  /* "input" */
    PyObject *output; /* "output" */
    KeyCache *keys_seen; /* the recipe's, when scan has one */
    int ascii_fast;      /* text_type is sanitize.text_type: ascii_text_type may stand in */
} Context;

/* One attribute of a span: ``_read``'s loop body. */
static int read_attribute(Context *ctx, const uint8_t *data, Py_ssize_t size, PyObject *found, PyObject *ranks,
                          Side *input, Side *output) {
    const uint8_t *key, *value;
    Py_ssize_t key_size, value_size;
    if (parse_key_value(data, size, &key, &key_size, &value, &value_size) != OK)
        return BAIL;
    KeySlot *slot = NULL;
    uint64_t hash = 0;
    PyObject *info = NULL;
    if (ctx->keys_seen) {
        hash = fnv1a(key, key_size);
        slot = key_slot(ctx->keys_seen, key, key_size, hash);
        if (slot->key)
            info = Py_NewRef(slot->info);
    }
    if (!info) {
        PyObject *key_obj = utf8(key, key_size);
        if (!key_obj)
            return BAIL;
        info = PyDict_GetItemWithError(ctx->kinds, key_obj); /* borrowed */
        if (info) {
            Py_INCREF(info);
        } else {
            if (PyErr_Occurred()) {
                Py_DECREF(key_obj);
                return ERROR;
            }
            info = PyObject_CallOneArg(ctx->classify, key_obj);
            if (!info) {
                Py_DECREF(key_obj);
                return ERROR;
            }
        }
        Py_DECREF(key_obj);
        if (slot) /* (classify ran Python: find the slot again, another scan may have filled it) */
            key_cache_put(ctx->keys_seen, key_slot(ctx->keys_seen, key, key_size, hash), key, key_size, hash, info);
    }
    int status = OK;
    if (info == Py_None) {
        /* not read */
    } else if (PyUnicode_Check(info)) { /* a content key: measured, never kept */
        if (PyUnicode_Compare(info, ctx->input) == 0)
            status = add_content(input, value, value_size, ctx->text_type, ctx->ascii_fast);
        else if (PyUnicode_Compare(info, ctx->output) == 0)
            status = add_content(output, value, value_size, ctx->text_type, ctx->ascii_fast);
    } else if (PyTuple_Check(info) && PyTuple_GET_SIZE(info) == 2) {
        PyObject *concept = PyTuple_GET_ITEM(info, 0);
        PyObject *rank = PyTuple_GET_ITEM(info, 1);
        long new_rank = PyLong_AsLong(rank);
        PyObject *current = PyDict_GetItemWithError(ranks, concept); /* borrowed */
        long current_rank = 99;
        if (current)
            current_rank = PyLong_AsLong(current);
        if ((new_rank == -1 || current_rank == -1) && PyErr_Occurred()) {
            status = ERROR;
        } else if (!current && PyErr_Occurred()) {
            status = ERROR;
        } else if (new_rank < current_rank) {
            PyObject *converted = NULL;
            status = value ? convert_any(value, value_size, 0, &converted) : (converted = Py_NewRef(Py_None), OK);
            if (status == OK) {
                int empty = converted == Py_None || (PyUnicode_Check(converted) && PyUnicode_GET_LENGTH(converted) == 0) ||
                            (PyList_Check(converted) && PyList_GET_SIZE(converted) == 0);
                if (!empty && (PyDict_SetItem(found, concept, converted) || PyDict_SetItem(ranks, concept, rank)))
                    status = ERROR;
                Py_DECREF(converted);
            }
        }
    } else {
        status = BAIL; /* a memo value this scanner does not know */
    }
    Py_DECREF(info);
    return status;
}

static PyObject *side_size(Side *side) {
    return side->seen ? PyLong_FromLongLong(side->size) : Py_NewRef(Py_None);
}

static PyObject *side_type(Side *side) {
    return side->seen ? Py_NewRef(side->type) : Py_NewRef(Py_None);
}

/* One span: its record (``build`` given and the span plain) or its tuple, appended to ``out``.
 * ``clean_service`` is the resource's sanitized service name (used only when building). */
static int parse_span(Context *ctx, const uint8_t *data, Py_ssize_t size, PyObject *service, PyObject *out, Build *build,
                      PyObject *clean_service) {
    Reader r = {data, data + size};
    Field f;
    uint32_t seen = 0;
    const uint8_t *trace_id = data, *span_id = data, *parent = data, *name = data, *status = NULL;
    Py_ssize_t trace_id_size = 0, span_id_size = 0, parent_size = 0, name_size = 0, status_size = 0;
    uint64_t start = 0, end = 0;
    int has_events = 0;
    int result = OK;
    Side input = {0, 0, NULL}, output = {0, 0, NULL};
    PyObject *found = PyDict_New();
    PyObject *ranks = PyDict_New();
    PyObject *item = NULL;
    if (!found || !ranks) {
        result = ERROR;
        goto done;
    }
    while (r.p < r.end && result == OK) {
        if (next_field(&r, &f) != OK) {
            result = BAIL;
            break;
        }
        switch (f.field) {
        case 1: case 2: case 4: case 5: case 9: case 11: case 15:
            if (f.wire != 2) {
                result = BAIL;
                break;
            }
            if (f.field == 9) {
                result = read_attribute(ctx, f.data, f.size, found, ranks, &input, &output);
            } else if (f.field == 11) {
                has_events = 1;
            } else if (seen & (1u << f.field)) {
                result = BAIL;
            } else {
                seen |= 1u << f.field;
                if (f.field == 1) { trace_id = f.data; trace_id_size = f.size; }
                else if (f.field == 2) { span_id = f.data; span_id_size = f.size; }
                else if (f.field == 4) { parent = f.data; parent_size = f.size; }
                else if (f.field == 5) { name = f.data; name_size = f.size; }
                else { status = f.data; status_size = f.size; }
            }
            break;
        case 7: case 8:
            if (f.wire != 1 || (seen & (1u << f.field))) {
                result = BAIL;
                break;
            }
            seen |= 1u << f.field;
            if (f.field == 7)
                start = fixed64(f.data);
            else
                end = fixed64(f.data);
            break;
        default:
            break; /* kind, trace_state, links, flags, dropped counts: not read */
        }
    }
    if (result != OK)
        goto done;

    long long code = 0;
    const uint8_t *message = data;
    Py_ssize_t message_size = 0;
    if (status) {
        Reader s = {status, status + status_size};
        uint32_t status_seen = 0;
        while (s.p < s.end) {
            if (next_field(&s, &f) != OK) {
                result = BAIL;
                goto done;
            }
            if (f.field == 2) {
                if (f.wire != 2 || (status_seen & 2)) {
                    result = BAIL;
                    goto done;
                }
                status_seen |= 2;
                message = f.data;
                message_size = f.size;
            } else if (f.field == 3) {
                if (f.wire != 0 || (status_seen & 4)) {
                    result = BAIL;
                    goto done;
                }
                status_seen |= 4;
                code = (int32_t)(uint32_t)f.varint; /* an enum is an int32 */
            }
        }
    }
    PyObject *name_obj = utf8(name, name_size);
    PyObject *message_obj = utf8(message, message_size);
    if (!name_obj || !message_obj) {
        Py_XDECREF(name_obj);
        Py_XDECREF(message_obj);
        result = BAIL;
        goto done;
    }
    if (build && !has_events) {
        Scanned scanned = {trace_id, span_id, parent, trace_id_size, span_id_size, parent_size, start, end, code,
                           name_obj, message_obj, found, clean_service, &input, &output};
        PyObject *record;
        int built = build_record(build, &scanned, &record);
        if (built != BAIL) {
            Py_DECREF(name_obj);
            Py_DECREF(message_obj);
            if (built == ERROR || PyList_Append(out, record))
                result = ERROR;
            Py_XDECREF(record);
            goto done;
        }
    }
    PyObject *raw = has_events ? PyBytes_FromStringAndSize((const char *)data, size) : Py_NewRef(Py_None);
    item = Py_BuildValue("(Oy#y#y#NKKLNONNNNN)", service, trace_id, trace_id_size, span_id, span_id_size, parent,
                         parent_size, name_obj, (unsigned long long)start, (unsigned long long)end, code, message_obj,
                         found, side_size(&input), side_type(&input), side_size(&output), side_type(&output), raw);
    if (!item || PyList_Append(out, item))
        result = ERROR;
done:
    Py_XDECREF(item);
    Py_XDECREF(found);
    Py_XDECREF(ranks);
    Py_XDECREF(input.type);
    Py_XDECREF(output.type);
    return result;
}

/* The first ``service.name`` attribute of a Resource, converted (None when there is none). */
static int service_name(const uint8_t *data, Py_ssize_t size, PyObject **out) {
    static const char KEY[] = "service.name";
    Reader r = {data, data + size};
    Field f;
    *out = NULL;
    while (r.p < r.end) {
        if (next_field(&r, &f) != OK)
            return BAIL;
        if (f.field != 1)
            continue;
        if (f.wire != 2)
            return BAIL;
        const uint8_t *key, *value;
        Py_ssize_t key_size, value_size;
        if (parse_key_value(f.data, f.size, &key, &key_size, &value, &value_size) != OK)
            return BAIL;
        if (!*out && key_size == (Py_ssize_t)(sizeof KEY - 1) && memcmp(key, KEY, key_size) == 0) {
            int status = value ? convert_any(value, value_size, 0, out) : (*out = Py_NewRef(Py_None), OK);
            if (status != OK)
                return status;
        }
    }
    if (!*out)
        *out = Py_NewRef(Py_None);
    return OK;
}

/* The resource's service name as ``Normalizer._service_value`` gives it, and a marker for the
 * caller, ``(raw, clean)``, placed before the resource's first span: the caller then takes the
 * clean name as it is instead of sanitizing (and counting) it again for spans left to it. NULL
 * without an exception: a name that is not text, left to Python with every span of the resource. */
static PyObject *clean_service_of(Build *b, PyObject *service, PyObject *out) {
    PyObject *clean;
    if (service == Py_None || (PyUnicode_CheckExact(service) && PyUnicode_GET_LENGTH(service) == 0))
        clean = Py_NewRef(Py_None);
    else if (PyUnicode_CheckExact(service))
        clean = ident(b, service);
    else
        return NULL;
    if (!clean)
        return NULL;
    PyObject *marker = PyTuple_Pack(2, service, clean);
    if (!marker || PyList_Append(out, marker)) {
        Py_XDECREF(marker);
        Py_DECREF(clean);
        return NULL;
    }
    Py_DECREF(marker);
    return clean;
}

static int parse_resource_spans(Context *ctx, const uint8_t *data, Py_ssize_t size, PyObject *out, Build *build) {
    Reader r = {data, data + size};
    Field f;
    PyObject *service = NULL, *clean_service = NULL;
    int result = OK, first = 1;
    /* the resource first (it may come after the spans on the wire) */
    while (r.p < r.end) {
        if (next_field(&r, &f) != OK)
            return BAIL;
        if (f.field == 1) {
            if (f.wire != 2 || service)
                return BAIL;
            int status = service_name(f.data, f.size, &service);
            if (status != OK) {
                Py_XDECREF(service);
                return status;
            }
        }
    }
    if (!service)
        service = Py_NewRef(Py_None);
    r.p = data;
    while (r.p < r.end && result == OK) {
        if (next_field(&r, &f) != OK || (f.field == 2 && f.wire != 2)) {
            result = BAIL;
            break;
        }
        if (f.field != 2)
            continue;
        Reader scope = {f.data, f.data + f.size};
        Field g;
        while (scope.p < scope.end && result == OK) {
            if (next_field(&scope, &g) != OK || (g.field == 2 && g.wire != 2)) {
                result = BAIL;
                break;
            }
            if (g.field != 2)
                continue;
            if (build && first) {
                first = 0;
                clean_service = clean_service_of(build, service, out);
                if (!clean_service && PyErr_Occurred()) {
                    result = ERROR;
                    break;
                }
            }
            result = parse_span(ctx, g.data, g.size, service, out, clean_service ? build : NULL, clean_service);
        }
    }
    Py_DECREF(service);
    Py_XDECREF(clean_service);
    return result;
}

/* The start times ``_invalid`` accepts, or 0 when they do not fit in 64 bits (then nothing is
 * built here: Python names every span's validity). */
static int time_window(PyObject *now, PyObject *future, PyObject *age, long long *earliest, long long *latest) {
    int o1, o2, o3;
    long long n = PyLong_AsLongLongAndOverflow(now, &o1), f = PyLong_AsLongLongAndOverflow(future, &o2),
              a = PyLong_AsLongLongAndOverflow(age, &o3);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (o1 || o2 || o3 || __builtin_add_overflow(n, f, latest) || __builtin_sub_overflow(n, a, earliest))
        return 0;
    return 1;
}

static PyObject *scan(PyObject *module, PyObject *args) {
    Py_buffer body;
    Context ctx;
    PyObject *capsule = Py_None, *normalizer = NULL, *tenant_id = NULL, *now = NULL, *future = NULL, *age = NULL;
    PyObject *counts = NULL;
    if (!PyArg_ParseTuple(args, "y*O!OO|OOUOOOO", &body, &PyDict_Type, &ctx.kinds, &ctx.classify, &ctx.text_type,
                          &capsule, &normalizer, &tenant_id, &now, &future, &age, &counts))
        return NULL;
    Build build_ctx = {0};
    Build *build = NULL;
    ctx.keys_seen = NULL;
    ctx.ascii_fast = 0;
    if (capsule != Py_None) {
        if (!counts) {
            PyBuffer_Release(&body);
            PyErr_SetString(PyExc_TypeError, "scan(): a recipe needs normalizer, tenant_id, now_ns, max_future_ns,"
                                             " max_age_ns and counts");
            return NULL;
        }
        build_ctx.r = PyCapsule_GetPointer(capsule, "agent_otel.recipe");
        if (!build_ctx.r) {
            PyBuffer_Release(&body);
            return NULL;
        }
        build_ctx.normalizer = normalizer;
        build_ctx.tenant_id = tenant_id;
        build_ctx.counts = counts;
        build_ctx.sanitizer = PyObject_GetAttr(normalizer, build_ctx.r->m_sanitizer);
        build_ctx.idents = build_ctx.sanitizer ? PyObject_GetAttr(build_ctx.sanitizer, build_ctx.r->m_idents) : NULL;
        build_ctx.users = build_ctx.sanitizer ? PyObject_GetAttr(build_ctx.sanitizer, build_ctx.r->m_users) : NULL;
        if (!build_ctx.idents || !build_ctx.users || !PyDict_Check(build_ctx.idents) || !PyDict_Check(build_ctx.users)) {
            Py_XDECREF(build_ctx.sanitizer);
            Py_XDECREF(build_ctx.idents);
            Py_XDECREF(build_ctx.users);
            PyBuffer_Release(&body);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "scan(): the sanitizer's memos are dicts");
            return NULL;
        }
        if (time_window(now, future, age, &build_ctx.earliest, &build_ctx.latest))
            build = &build_ctx;
        ctx.keys_seen = build_ctx.r->keys_seen;
        ctx.ascii_fast = ctx.text_type == build_ctx.r->text_type;
    }
    ctx.input = PyUnicode_InternFromString("input");
    ctx.output = PyUnicode_InternFromString("output");
    PyObject *out = PyList_New(0);
    int result = (ctx.input && ctx.output && out) ? OK : ERROR;
    Reader r = {(const uint8_t *)body.buf, (const uint8_t *)body.buf + body.len};
    Field f;
    while (result == OK && r.p < r.end) {
        if (next_field(&r, &f) != OK || (f.field == 1 && f.wire != 2)) {
            result = BAIL;
            break;
        }
        if (f.field == 1)
            result = parse_resource_spans(&ctx, f.data, f.size, out, build);
    }
    PyBuffer_Release(&body);
    Py_XDECREF(build_ctx.sanitizer);
    Py_XDECREF(build_ctx.idents);
    Py_XDECREF(build_ctx.users);
    Py_XDECREF(ctx.input);
    Py_XDECREF(ctx.output);
    if (result == OK)
        return out;
    Py_XDECREF(out);
    if (result == ERROR)
        return NULL;
    PyErr_Clear();
    Py_RETURN_NONE;
}

/* -- timestamps ------------------------------------------------------------------------------ */

/* ``rows.ts``: nanoseconds since the epoch as an aware UTC datetime, microseconds floored, the
 * same as ``EPOCH + timedelta(0, 0, ns // 1000)``. Rows carry two per span, and the timedelta
 * arithmetic took 0.37 us each (issue 7); here the date is computed directly (days to civil
 * date, H. Hinnant's algorithm) and the datetime made by the datetime module's C API. */
static PyObject *utc_tz;

static int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

static PyObject *utc_datetime(PyObject *module, PyObject *arg) {
    int overflow;
    long long ns = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (ns == -1 && PyErr_Occurred())
        return NULL;
    int64_t us;
    if (!overflow) {
        us = floor_div(ns, 1000);
    } else { /* beyond 64-bit nanoseconds (after 2262): in microseconds it still fits */
        PyObject *thousand = PyLong_FromLong(1000);
        PyObject *micros = thousand ? PyNumber_FloorDivide(arg, thousand) : NULL;
        Py_XDECREF(thousand);
        if (!micros)
            return NULL;
        us = PyLong_AsLongLongAndOverflow(micros, &overflow);
        Py_DECREF(micros);
        if (us == -1 && PyErr_Occurred())
            return NULL;
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "date value out of range");
            return NULL;
        }
    }
    int64_t days = floor_div(us, 86400000000LL);
    int64_t rest = us - days * 86400000000LL;
    /* civil_from_days: days since 1970-01-01 -> (year, month, day), proleptic Gregorian */
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t year = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int day = (int)(doy - (153 * mp + 2) / 5 + 1);
    int month = (int)(mp < 10 ? mp + 3 : mp - 9);
    year += month <= 2;
    if (year < 1 || year > 9999) {
        PyErr_SetString(PyExc_OverflowError, "date value out of range");
        return NULL;
    }
    int hour = (int)(rest / 3600000000LL), minute = (int)(rest / 60000000LL % 60);
    int second = (int)(rest / 1000000 % 60), micro = (int)(rest % 1000000);
    return PyDateTimeAPI->DateTime_FromDateAndTime((int)year, month, day, hour, minute, second, micro, utc_tz,
                                                   PyDateTimeAPI->DateTimeType);
}

/* ``store.sqlite_ts``: a datetime as SQLAlchemy's SQLite text form, naive UTC with microseconds
 * ("2026-12-07 01:02:03.000456"), the same as ``value.astimezone(UTC).isoformat(" ",
 * "microseconds")[:26]``. The SQLite writer converts two timestamps per span, and that Python took
 * 1.5 to 1.9 us each, 3.5% of the writer thread (py-spy, issue 7). An aware datetime in another
 * zone is first converted by its own ``astimezone``; a naive one is taken as UTC already. */
static PyObject *sqlite_ts(PyObject *module, PyObject *arg) {
    if (!PyDateTime_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "sqlite_ts expects a datetime");
        return NULL;
    }
    PyObject *value = arg;
    Py_INCREF(value);
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(value);
    if (tz != Py_None && tz != utc_tz) {
        Py_DECREF(value);
        value = PyObject_CallMethod(arg, "astimezone", "O", utc_tz);
        if (!value)
            return NULL;
        if (!PyDateTime_Check(value)) {
            Py_DECREF(value);
            PyErr_SetString(PyExc_TypeError, "astimezone did not return a datetime");
            return NULL;
        }
    }
    char text[32];
    int length = snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d.%06d", PyDateTime_GET_YEAR(value),
                          PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value), PyDateTime_DATE_GET_HOUR(value),
                          PyDateTime_DATE_GET_MINUTE(value), PyDateTime_DATE_GET_SECOND(value),
                          PyDateTime_DATE_GET_MICROSECOND(value));
    Py_DECREF(value);
    return PyUnicode_FromStringAndSize(text, length);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Scan an ExportTraceServiceRequest's spans (see the module's comment)."},
    {"recipe", recipe, METH_O, "What scan needs to build records itself (see the comment on records)."},
    {"utc_datetime", utc_datetime, METH_O, "Nanoseconds since the epoch as an aware UTC datetime (rows.ts)."},
    {"sqlite_ts", sqlite_ts, METH_O, "A datetime as SQLite's timestamp text, naive UTC (store.sqlite_ts)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_spanscan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__spanscan(void) {
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI)
        return NULL;
    utc_tz = PyDateTimeAPI->TimeZone_UTC;
    return PyModule_Create(&module);
}
