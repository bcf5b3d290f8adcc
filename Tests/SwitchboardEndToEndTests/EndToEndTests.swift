import Testing
import SwitchboardTestSupport

/// Every end-to-end suite runs the real binary; they run one at a time so the 2-core machine is not oversubscribed.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EndToEndTests {}
