package tidings

import "context"

// Broker carries Messages to every node of a cluster. Implementations:
// internal/broker/membroker (one process). A later Redis or NATS broker
// implements the same contract.
//
// Contract:
//   - Publish returns once the message is handed to the broker (for the
//     memory broker: delivered to the local handler); it does not wait for
//     subscribers to receive it.
//   - Every message published on any node after Run has started is passed
//     to the handler of every node, at most once per node.
//   - Messages published to one channel from one node reach a handler in
//     the order they were published.
//   - Messages may be lost while a node is disconnected from the broker;
//     durable state (notifications) lives in the Store, and clients resume
//     from their cursor.
type Broker interface {
	Publish(ctx context.Context, m *Message) error
	// Run delivers messages to handler until ctx is done. The handler must
	// not block (it hands the message to the local fan-out).
	Run(ctx context.Context, handler func(*Message)) error
}
