package config

import "time"

// MinSessionDuration is the smallest server.max_session_duration.
const MinSessionDuration = time.Second

// validateBudget checks server.max_inflight_bytes and
// server.max_session_duration.
func validateBudget(p *problems, s *Server) {
	switch {
	case s.MaxInflightBytes < 0:
		p.add("server.max_inflight_bytes", "must not be negative (0 = derived from the memory limit), got %d", s.MaxInflightBytes)
	case s.MaxInflightBytes > 0 && s.MaxMessageBytes > 0 && s.MaxInflightBytes < s.MaxMessageBytes:
		p.add("server.max_inflight_bytes", "must be at least server.max_message_bytes (%d), or no message of the largest size could ever pass; got %d",
			s.MaxMessageBytes, s.MaxInflightBytes)
	}
	if s.MaxSessionDuration < MinSessionDuration {
		p.add("server.max_session_duration", "must be at least %s, got %s", MinSessionDuration, s.MaxSessionDuration)
	}
}
