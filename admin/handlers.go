package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// route is one API path: its handler for each method, and the query
// parameters it takes.
type route struct {
	methods map[string]http.HandlerFunc
	params  []string
}

func (s *Server) handler() http.Handler {
	routes := map[string]route{
		"/v1/status":   {methods: map[string]http.HandlerFunc{http.MethodGet: s.status}},
		"/v1/backends": {methods: map[string]http.HandlerFunc{http.MethodGet: s.backends}, params: []string{"service"}},
		"/v1/config":   {methods: map[string]http.HandlerFunc{http.MethodGet: s.config}},
		"/v1/drain": {methods: map[string]http.HandlerFunc{http.MethodGet: s.drainProgress, http.MethodPost: s.drain},
			params: []string{"target"}},
		"/v1/reload": {methods: map[string]http.HandlerFunc{http.MethodPost: s.reload}},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if msg := s.refuse(r); msg != "" {
			writeError(w, http.StatusForbidden, CodeForbidden, msg)
			return
		}
		rt, ok := routes[r.URL.Path]
		if !ok {
			writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no such endpoint %s", r.URL.Path))
			return
		}
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet // net/http drops the body
		}
		h, ok := rt.methods[method]
		if !ok {
			allowed := make([]string, 0, len(rt.methods))
			for m := range rt.methods {
				allowed = append(allowed, m)
			}
			slices.Sort(allowed)
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				fmt.Sprintf("%s %s: method not allowed (use %s)", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
			return
		}
		for name := range r.URL.Query() {
			if !slices.Contains(rt.params, name) || method == http.MethodPost {
				writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("%s %s: unknown query parameter %q", r.Method, r.URL.Path, name))
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	})
}

// refuse returns why r is refused, or "". The API has no authentication:
// on a unix socket the file mode keeps other users out, on loopback TCP
// nothing does, and a web page in a local browser could reach it. So
// requests a browser makes are refused: cross-site ones carry Origin or
// Sec-Fetch-Site (Fetch standard), which the CLI never sends, and a DNS
// rebinding attack shows up as a Host that is not a loopback literal.
func (s *Server) refuse(r *http.Request) string {
	if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
		return "requests from web browsers are refused"
	}
	if s.socket != "" {
		return ""
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Sprintf("host %q is not a loopback address", r.Host)
	}
	return ""
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.d.Status(r.Context())
	if err != nil {
		s.writeDaemonError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// backends answers with the status of one service (and, for an l7
// service, the pools its routes use), or of everything.
func (s *Server) backends(w http.ResponseWriter, r *http.Request) {
	st, err := s.d.Status(r.Context())
	if err != nil {
		s.writeDaemonError(w, r, err)
		return
	}
	q := r.URL.Query()
	if !q.Has("service") {
		writeJSON(w, http.StatusOK, st)
		return
	}
	name := q.Get("service")
	i := slices.IndexFunc(st.Services, func(s Service) bool { return s.Name == name })
	if i < 0 {
		s.writeDaemonError(w, r, fmt.Errorf("%w %q", ErrUnknownService, name))
		return
	}
	svc := st.Services[i]
	out := Status{Config: st.Config, Services: []Service{svc}, Pools: []Pool{}}
	for _, p := range st.Pools {
		if slices.Contains(svc.Pools, p.Name) {
			out.Pools = append(out.Pools, p)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	cfg, err := s.d.Config(r.Context())
	if err != nil {
		s.writeDaemonError(w, r, err)
		return
	}
	b, err := EncodeConfig(cfg)
	if err != nil {
		s.writeDaemonError(w, r, err)
		return
	}
	// application/yaml: RFC 9512.
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	var req DrainRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeBodyError(w, err)
		return
	}
	switch {
	case req.All && req.Target != "":
		writeError(w, http.StatusBadRequest, CodeBadRequest, `body: give "target" or "all", not both`)
		return
	case req.Target == "" && !req.All:
		writeError(w, http.StatusBadRequest, CodeBadRequest, `body: missing "target" (service/backend or an upstream's URL) or "all": true`)
		return
	case req.Drain == nil:
		writeError(w, http.StatusBadRequest, CodeBadRequest, `body: missing "drain" (true to drain, false to undrain)`)
		return
	}
	verb := "undrain"
	if *req.Drain {
		verb = "drain"
	}
	if req.All {
		res, err := s.d.DrainAll(r.Context(), *req.Drain)
		if err != nil {
			s.log.Warn("admin "+verb+" --all failed", "peer", peer(r), "err", err)
			s.writeDaemonError(w, r, err)
			return
		}
		s.log.Info("admin "+verb+" --all", "targets", res.Targets, "peer", peer(r))
		writeJSON(w, http.StatusOK, res)
		return
	}
	if err := s.d.Drain(r.Context(), req.Target, *req.Drain); err != nil {
		s.log.Warn("admin "+verb+" refused", "target", req.Target, "peer", peer(r), "err", err)
		s.writeDaemonError(w, r, err)
		return
	}
	s.log.Info("admin "+verb, "target", req.Target, "peer", peer(r))
	p, err := s.d.DrainProgress(r.Context(), req.Target)
	if err != nil {
		s.writeDaemonError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) drainProgress(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	if target == "" {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "missing ?target= (service/backend or an upstream's URL)")
		return
	}
	p, err := s.d.DrainProgress(r.Context(), target)
	if err != nil {
		s.writeDaemonError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	// The body, if any, must be an empty object: a reload takes no
	// parameters yet, and a field would silently mean nothing.
	if err := decodeBody(w, r, &struct{}{}); err != nil && !errors.Is(err, errEmptyBody) {
		writeBodyError(w, err)
		return
	}
	res, err := s.d.Reload(r.Context())
	if err != nil {
		s.log.Warn("admin reload rejected", "peer", peer(r), "err", err)
		s.writeDaemonError(w, r, err)
		return
	}
	s.log.Info("admin reload", "peer", peer(r), "changes", res.Changes)
	writeJSON(w, http.StatusOK, res)
}

// writeDaemonError answers with the status that err's kind calls for.
func (s *Server) writeDaemonError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrUnknownTarget):
		writeError(w, http.StatusNotFound, CodeUnknownTarget, err.Error())
	case errors.Is(err, ErrUnknownService):
		writeError(w, http.StatusNotFound, CodeUnknownService, err.Error())
	case Problems(err) != nil:
		ps := Problems(err)
		noun := "problems"
		if len(ps) == 1 {
			noun = "problem"
		}
		// RFC 9110 §15.5.21: the request was understood, the content it
		// refers to (the file) cannot be processed.
		writeJSON(w, http.StatusUnprocessableEntity, ErrorBody{
			Error:    fmt.Sprintf("configuration rejected, %d %s; the running configuration stays", len(ps), noun),
			Code:     CodeConfigRejected,
			Problems: problemsOf(ps),
		})
	default:
		s.log.Error("admin api", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, err.Error())
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: fmt.Sprintf("encode answer: %v", err), Code: CodeInternal})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
