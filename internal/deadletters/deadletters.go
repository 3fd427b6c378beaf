// Package deadletters is the operator's tool for the dead letters the
// subscriber keeps: list them, and replay them to their topic once the
// cause is fixed.
package deadletters

import (
	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/order"

	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	dapr "github.com/dapr/go-sdk/client"

	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/logging"
	"dapr-pub-sub/internal/sidecar"
	"dapr-pub-sub/internal/store"
)

// Publisher is the part of the Dapr SDK client a replay uses.
type Publisher interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data any, opts ...dapr.PublishEventOption) error
}

// Replay publishes each dead letter whose event id is in ids (all when ids
// is empty) to the topic it first went to, with its original content type,
// and then forgets it. Each goes out under a new CloudEvent id, so that if
// it fails again it is kept again; the subscriber dedupes by order id, so an
// order that was processed meanwhile is not processed twice. It returns the
// replayed event ids, and stops at the first failure, keeping what was not
// replayed.
func Replay(ctx context.Context, st *store.Store, pub Publisher, ids []string, out io.Writer) ([]string, error) {
	list, err := st.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, dl := range list {
		if len(ids) > 0 && !slices.Contains(ids, dl.EventID) {
			continue
		}
		newID := dl.EventID + "+replay-" + strconv.FormatInt(time.Now().UnixMilli(), 10)
		ct := dl.ContentType
		if ct == "" {
			ct = "application/json"
		}
		err := pub.PublishEvent(ctx, dl.PubSub, dl.Topic, dl.Data,
			dapr.PublishEventWithContentType(ct),
			dapr.PublishEventWithMetadata(map[string]string{order.CloudEventIDKey: newID}))
		if err != nil {
			return done, fmt.Errorf("replay %s to %s/%s: %w", dl.EventID, dl.PubSub, dl.Topic, err)
		}
		if err := st.RemoveDeadLetter(ctx, dl.EventID); err != nil {
			return done, fmt.Errorf("replayed %s as %s but could not remove it from the dead letters (a second replay is harmless): %w", dl.EventID, newID, err)
		}
		fmt.Fprintf(out, "replayed %s to %s/%s as %s\n", dl.EventID, dl.PubSub, dl.Topic, newID)
		done = append(done, dl.EventID)
	}
	for _, id := range ids {
		if !slices.Contains(done, id) {
			return done, fmt.Errorf("no dead letter with event id %q (see `deadletters list`)", id)
		}
	}
	return done, nil
}

// List writes the dead letters as a table.
func List(ctx context.Context, st *store.Store, out io.Writer) error {
	list, err := st.DeadLetters(ctx)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(out, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT ID\tTOPIC\tRECEIVED\tREASON\tDATA")
	for _, dl := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dl.EventID, dl.Topic, dl.ReceivedAt.Format(time.RFC3339), dl.Reason, preview(dl.Data))
	}
	fmt.Fprintf(tw, "\n%d dead letter(s)\n", len(list))
	return tw.Flush()
}

func preview(b []byte) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes of binary)", len(b))
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// Run is the deadletters program: `deadletters list` or
// `deadletters replay [-id EVENT_ID]...`.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := &cli.Env{Getenv: getenv}
	var address, storeName, appID string
	var ids idList
	fs := cli.NewFlagSet("deadletters", "Lists the dead letters the subscriber kept, or replays them to their topic.\n\n  deadletters [flags] list\n  deadletters [flags] replay [-id EVENT_ID]...   (all when no -id)\n\nRun it beside a sidecar that may publish to the topic (the publisher's, 50001\nin `make run`).", stderr)
	fs.StringVar(&address, "dapr-address", sidecar.Address(getenv), "the sidecar's gRPC address [DAPR_GRPC_ENDPOINT, or DAPR_GRPC_PORT on 127.0.0.1]")
	fs.StringVar(&storeName, "state-store", env.Str(appenv.StateStore, "statestore"), "Dapr state store the subscriber keeps dead letters in [STATE_STORE]")
	fs.StringVar(&appID, "app-id", env.Str("SUBSCRIBER_APP_ID", "subscriber"), "whose dead letters [SUBSCRIBER_APP_ID]")
	if err := fs.Parse(args); err != nil {
		return err // flag.ErrHelp after -h: cli.Main exits 0
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("say list or replay")
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	client, err := sidecar.Dial(address, getenv(appenv.DaprAPIToken), logging.New(stderr, getenv(appenv.LogFormat), env.Str(appenv.LogLevel, "warn")))
	if err != nil {
		return err
	}
	defer client.Close()
	st := store.New(client, storeName, appID)
	switch cmd {
	case "list":
		if len(rest) > 0 {
			return fmt.Errorf("list takes no arguments, got %q", rest)
		}
		return List(ctx, st, stdout)
	case "replay":
		rfs := cli.NewFlagSet("deadletters replay", "Replays dead letters: those named with -id, or all.", stderr)
		rfs.Var(&ids, "id", "event id of a dead letter to replay; repeat for more")
		if err := cli.Parse(rfs, rest); err != nil {
			return err
		}
		done, err := Replay(ctx, st, client, ids, stdout)
		fmt.Fprintf(stdout, "%d dead letter(s) replayed\n", len(done))
		return err
	}
	return fmt.Errorf("unknown command %q: say list or replay", cmd)
}

// idList is a repeatable -id flag.
type idList []string

func (l *idList) String() string     { return strings.Join(*l, ",") }
func (l *idList) Set(v string) error { *l = append(*l, v); return nil }
