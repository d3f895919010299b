package domains

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// MaxBody is the largest request body the admin API reads: a certificate chain and its key take
// a few KiB.
const MaxBody = 1 << 20

// APIPrefix is where the admin API's routes live.
const APIPrefix = "/api/v1"

// Handler returns the admin API (JSON; errors are {"error": sentence, "status": code}):
//
//	GET    /api/v1/domains                          list
//	POST   /api/v1/domains                          add: {"domain": "example.com"}
//	GET    /api/v1/domains/{domain}                 one row of the list
//	DELETE /api/v1/domains/{domain}                 delete
//	GET    /api/v1/domains/{domain}/certificate     decoded; ?format=pem: the chain as PEM
//	PUT    /api/v1/domains/{domain}/certificate     upload: {"certificate": PEM, "key": PEM} or a PEM body
//	POST   /api/v1/domains/{domain}/csr             make a CSR: CSROptions as JSON (empty: defaults)
//	GET    /api/v1/domains/{domain}/csr             the pending CSR; ?format=pem: as PEM
//	DELETE /api/v1/domains/{domain}/csr             discard it
//	GET    /api/v1/domains/{domain}/acme            ACME status
//	POST   /api/v1/domains/{domain}/acme            turn ACME on
//	DELETE /api/v1/domains/{domain}/acme            turn ACME off
//	GET    /healthz, /api/v1/healthz                "ok"
//
// The handler does no authentication; whoever serves it decides who may reach it.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, methods map[string]http.HandlerFunc) {
		allow := make([]string, 0, len(methods))
		for k := range methods {
			allow = append(allow, k)
		}
		sort.Strings(allow)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			h, ok := methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				h, ok = methods[http.MethodGet]
			}
			if !ok {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				writeError(w, fail(ErrMethod, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
			h(w, r)
		})
	}
	health := map[string]http.HandlerFunc{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	}}
	route("/healthz", health)
	route(APIPrefix+"/healthz", health)
	route(APIPrefix+"/domains", map[string]http.HandlerFunc{
		http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"domains": m.List()})
		},
		http.MethodPost: func(w http.ResponseWriter, r *http.Request) {
			var body struct {
				Domain string `json:"domain"`
			}
			if err := readJSON(r, &body, false); err != nil {
				writeError(w, err)
				return
			}
			if body.Domain == "" {
				writeError(w, fail(ErrBadRequest, `the body needs the domain to add: {"domain": "example.com"}`))
				return
			}
			in, err := m.Add(r.Context(), body.Domain)
			reply(w, http.StatusCreated, in, err)
		},
	})
	one := APIPrefix + "/domains/{domain}"
	route(one, map[string]http.HandlerFunc{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			in, err := m.Get(r.PathValue("domain"))
			reply(w, http.StatusOK, in, err)
		},
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			d := r.PathValue("domain")
			err := m.Delete(r.Context(), d)
			reply(w, http.StatusOK, message("domain %s deleted; its hosts serve what they served before it was added", normalizeForMsg(d)), err)
		},
	})
	route(one+"/certificate", map[string]http.HandlerFunc{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			d := r.PathValue("domain")
			if wantPEM(r) {
				b, err := m.ShowPEM(d)
				replyPEM(w, b, err)
				return
			}
			det, err := m.Show(d)
			reply(w, http.StatusOK, det, err)
		},
		http.MethodPut: func(w http.ResponseWriter, r *http.Request) {
			certPEM, keyPEM, err := readUpload(r)
			if err != nil {
				writeError(w, err)
				return
			}
			det, err := m.Upload(r.Context(), r.PathValue("domain"), certPEM, keyPEM)
			reply(w, http.StatusOK, det, err)
		},
	})
	route(one+"/csr", map[string]http.HandlerFunc{
		http.MethodPost: func(w http.ResponseWriter, r *http.Request) {
			var o CSROptions
			if err := readJSON(r, &o, true); err != nil {
				writeError(w, err)
				return
			}
			in, err := m.CSR(r.Context(), r.PathValue("domain"), o)
			reply(w, http.StatusCreated, in, err)
		},
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			in, err := m.PendingCSR(r.PathValue("domain"))
			if wantPEM(r) {
				replyPEM(w, []byte(in.CSR), err)
				return
			}
			reply(w, http.StatusOK, in, err)
		},
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			d := r.PathValue("domain")
			err := m.DiscardCSR(r.Context(), d)
			reply(w, http.StatusOK, message("the CSR for %s and its key are discarded", normalizeForMsg(d)), err)
		},
	})
	route(one+"/acme", map[string]http.HandlerFunc{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			st, err := m.ACMEState(r.PathValue("domain"))
			reply(w, http.StatusOK, st, err)
		},
		http.MethodPost: func(w http.ResponseWriter, r *http.Request) {
			st, err := m.EnableACME(r.Context(), r.PathValue("domain"))
			reply(w, http.StatusAccepted, st, err)
		},
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			st, err := m.DisableACME(r.Context(), r.PathValue("domain"))
			reply(w, http.StatusOK, st, err)
		},
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fail(ErrNoRoute, "no API at %s; the domains API is under %s/domains", r.URL.Path, APIPrefix))
	})
	return mux
}

// Message is the body of a success that has nothing else to say.
type Message struct {
	Message string `json:"message"`
}

func message(format string, args ...any) Message { return Message{fmt.Sprintf(format, args...)} }

func normalizeForMsg(d string) string {
	if n, err := checkDomain(d); err == nil {
		return n
	}
	return d
}

func wantPEM(r *http.Request) bool {
	return strings.EqualFold(r.URL.Query().Get("format"), "pem")
}

func reply(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, v)
}

func replyPEM(w http.ResponseWriter, b []byte, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// APIError is the body of every error answer.
type APIError struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = fail(ErrStorage, "internal error: %v", err)
	}
	writeJSON(w, e.Status, APIError{Error: e.Msg, Status: e.Status})
}

// readBody reads the whole (size-limited) body.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fail(ErrTooLarge, "the request body is over %d KiB; a certificate chain and its key take a few KiB, so check that the right file was sent", MaxBody>>10)
	}
	if err != nil {
		return nil, fail(ErrBadRequest, "could not read the request body: %v", err)
	}
	return b, nil
}

// readJSON decodes a JSON body into v, refusing unknown fields; an empty body is allowed when
// emptyOK.
func readJSON(r *http.Request, v any, emptyOK bool) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if emptyOK {
			return nil
		}
		return fail(ErrBadRequest, "the request body is empty; send JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(ErrBadRequest, "the request body is not the JSON expected: %s", jsonProblem(err))
	}
	if dec.More() {
		return fail(ErrBadRequest, "the request body holds more than one JSON value")
	}
	return nil
}

// jsonProblem says what is wrong with a request body in words of its own: the decoder's messages
// quote the body (an unknown field's name, the character at a syntax error), and a body may hold
// a private key.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be a JSON %s", typ.Field, typ.Type.Kind())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// A name like a field's (a typo) is worth naming; anything else might be key text.
		if name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field ")); len(name) <= 24 &&
			strings.Trim(name, "abcdefghijklmnopqrstuvwxyz_") == "" && name != "" {
			return fmt.Sprintf("unknown field %q", name)
		}
		return "a field this request does not take (see 'edgesim domains -h' or the README for the fields)"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the JSON ends too early"
	}
	return "it does not decode"
}

// readUpload takes {"certificate": PEM, "key": PEM} as JSON, or a PEM body (certificate chain,
// optionally followed by its key).
func readUpload(r *http.Request) (certPEM, keyPEM []byte, err error) {
	b, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" || bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		var body struct {
			Certificate string `json:"certificate"`
			Key         string `json:"key"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			return nil, nil, fail(ErrBadRequest, `the request body is not the JSON expected ({"certificate": PEM, "key": PEM}): %s`, jsonProblem(err))
		}
		return []byte(body.Certificate), []byte(body.Key), nil
	}
	return b, nil, nil
}
