package bench

// Result is what one run of one scenario measured. Scenario.Run fills the
// measured fields (Measure does most of it); the runner fills the labels.
type Result struct {
	// Labels, set by the runner.
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"`        // ModeThroughput or ModeRate
	Rate     float64 `json:"rate"`        // offered msg/s; 0 in throughput mode
	Size     int     `json:"size"`        // requested payload size
	Fsync    string  `json:"appendfsync"` // the broker's appendfsync policy
	Rep      int     `json:"rep"`         // 1-based repetition
	Error    string  `json:"error,omitempty"`

	// PayloadBytes is the actual payload size (see Payload).
	PayloadBytes int `json:"payload_bytes"`

	Messages   int    `json:"messages"`    // to send
	Sent       int    `json:"sent"`        // sent without error
	SendFailed int    `json:"send_failed"` // send returned an error
	SendError  string `json:"send_error,omitempty"`
	Delivered  int    `json:"delivered"`          // distinct ids delivered
	Lost       int    `json:"lost"`               // sent, never delivered
	Dup        int    `json:"dup"`                // deliveries beyond the first
	Unknown    int    `json:"unknown"`            // deliveries of ids never sent
	Absorbed   int    `json:"absorbed,omitempty"` // redeliveries a dedupe store caught: acknowledged, no second effect

	// Seconds is from the first send stamp to the last first delivery;
	// Throughput is Delivered / Seconds.
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"`
	// SendSeconds is how long the generator took to send everything;
	// MaxLagMs is the longest a message waited past its due time for a
	// free sender (rate mode).
	SendSeconds float64 `json:"send_seconds"`
	MaxLagMs    float64 `json:"max_lag_ms"`

	Latency Latency `json:"latency_ms"`

	// CPUSeconds is the CPU time (user+system) each named process used
	// during the run; CPUPer1k is the same per 1,000 messages sent.
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	CPUPer1k   map[string]float64 `json:"cpu_s_per_1k"`
	// Busy is the machine's busy share over the same interval, 0–1, all
	// cores and every process (/proc/stat); BusyUnknown for a run too short
	// for the ticks to say (see minBusyTicks).
	Busy float64 `json:"busy"`
}

// CPUTotal is the CPU seconds per 1,000 messages of every process the
// run accounted, the load generator and the broker included.
func (r Result) CPUTotal() float64 {
	sum := 0.0
	for _, v := range r.CPUPer1k {
		sum += v
	}
	return sum
}

// Latency is end-to-end latency in milliseconds, from each message's stamp
// (see Outgoing.Stamp) to its first delivery.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}
