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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
static int measure(const uint8_t *data, Py_ssize_t size, PyObject *text_type, int want_type, long long *out_size,
                   PyObject **out_type) {
    AnyValue v;
    const char *type = NULL;
    if (parse_any(data, size, &v) != OK)
        return BAIL;
    *out_type = NULL;
    switch (v.kind) {
    case 1:
        *out_size = v.size;
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

static int add_content(Side *side, const uint8_t *data, Py_ssize_t size, PyObject *text_type) {
    long long measured;
    PyObject *type;
    int status = measure(data, size, text_type, !side->seen, &measured, &type);
    if (status != OK)
        return status;
    side->size += measured;
    if (!side->seen) {
        side->seen = 1;
        side->type = type;
    }
    return OK;
}

/* -- spans ---------------------------------------------------------------------------------- */

typedef struct {
    PyObject *kinds;
    PyObject *classify;
    PyObject *text_type;
    PyObject *input;  /* "input" */
    PyObject *output; /* "output" */
} Context;

/* One attribute of a span: ``_read``'s loop body. */
static int read_attribute(Context *ctx, const uint8_t *data, Py_ssize_t size, PyObject *found, PyObject *ranks,
                          Side *input, Side *output) {
    const uint8_t *key, *value;
    Py_ssize_t key_size, value_size;
    if (parse_key_value(data, size, &key, &key_size, &value, &value_size) != OK)
        return BAIL;
    PyObject *key_obj = utf8(key, key_size);
    if (!key_obj)
        return BAIL;
    PyObject *info = PyDict_GetItemWithError(ctx->kinds, key_obj); /* borrowed */
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
    int status = OK;
    if (info == Py_None) {
        /* not read */
    } else if (PyUnicode_Check(info)) { /* a content key: measured, never kept */
        if (PyUnicode_Compare(info, ctx->input) == 0)
            status = add_content(input, value, value_size, ctx->text_type);
        else if (PyUnicode_Compare(info, ctx->output) == 0)
            status = add_content(output, value, value_size, ctx->text_type);
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

static int parse_span(Context *ctx, const uint8_t *data, Py_ssize_t size, PyObject *service, PyObject *out) {
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

static int parse_resource_spans(Context *ctx, const uint8_t *data, Py_ssize_t size, PyObject *out) {
    Reader r = {data, data + size};
    Field f;
    PyObject *service = NULL;
    int result = OK;
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
            if (g.field == 2)
                result = parse_span(ctx, g.data, g.size, service, out);
        }
    }
    Py_DECREF(service);
    return result;
}

static PyObject *scan(PyObject *module, PyObject *args) {
    Py_buffer body;
    Context ctx;
    if (!PyArg_ParseTuple(args, "y*O!OO", &body, &PyDict_Type, &ctx.kinds, &ctx.classify, &ctx.text_type))
        return NULL;
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
            result = parse_resource_spans(&ctx, f.data, f.size, out);
    }
    PyBuffer_Release(&body);
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

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Scan an ExportTraceServiceRequest's spans (see the module's comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_spanscan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__spanscan(void) { return PyModule_Create(&module); }
