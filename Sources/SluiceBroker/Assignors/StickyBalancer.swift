// Cooperative-sticky planning when members subscribe to different topics: keep every valid
// claim, place the unclaimed partitions greedily, then pass partitions along chains of
// members until no chain can make the counts more even. Value type, one call at a time.

/// Balances a sticky plan for members with differing subscriptions. Members, topics and
/// partitions (slots) are numbered as in `StickyAssignment`.
///
/// "Balanced" means the sum of squared member counts is minimal. This is a convex-cost flow
/// problem, so a plan is optimal exactly when no improving path exists: no chain of members
/// m0 → m1 → … → mk, where each passes one partition of a topic the next subscribes to, such
/// that m0 holds at least two more than mk. `balance` removes such paths until none is left.
///
/// Stickiness: every valid claim is kept at first, and moves prefer partitions going back
/// to their previous owner, then partitions the giver did not own before. A first pass moves
/// only the latter. In a cooperative follow-up round the only unowned partitions are the
/// revoked ones, and the previous round's plan shows that placing them alone reaches the
/// optimum; so the follow-up never revokes anything and the plan settles after one round.
struct StickyBalancer {
    /// One step of a path: `from` passes partitions of topic `topic` to `to`.
    struct Hop {
        var from: Int
        var to: Int
        var topic: Int
    }

    private let assignment: StickyAssignment
    /// Per topic: the subscribed members, in member order.
    private let subscribers: [[Int]]
    /// Per member, per topic: the slots the member holds in the plan.
    private var held: [[[Int]]]
    /// Per member, per topic: how many of `held` the member did not own before.
    private var fresh: [[Int]]
    /// Per member: how many partitions it holds.
    private var count: [Int]

    /// Starts from every valid claim kept where it is.
    init(_ assignment: StickyAssignment) {
        let topicCount = assignment.topics.count
        var subscribers = [[Int]](repeating: [], count: topicCount)
        for (member, subscription) in assignment.subscriptions.enumerated() {
            for topic in subscription { subscribers[topic].append(member) }
        }
        var held = [[[Int]]](repeating: [[Int]](repeating: [], count: topicCount), count: assignment.members.count)
        for (member, slots) in assignment.owned.enumerated() {
            for slot in slots { held[member][assignment.topicOfSlot[slot]].append(slot) }
        }
        self.assignment = assignment
        self.subscribers = subscribers
        self.held = held
        self.fresh = [[Int]](repeating: [Int](repeating: 0, count: topicCount), count: assignment.members.count)
        self.count = assignment.owned.map(\.count)
    }

    /// The plan: slots per member, in member order.
    var plan: [[Int]] { held.map { $0.flatMap { $0 } } }

    /// Gives every unclaimed partition to the least loaded member subscribed to its topic
    /// (the first in member order on a tie), topics with the fewest subscribers first, as they
    /// have the fewest places to go.
    mutating func placeUnowned() {
        let order = subscribers.indices.sorted { (subscribers[$0].count, $0) < (subscribers[$1].count, $1) }
        for topic in order {
            let candidates = subscribers[topic]
            for slot in assignment.firstSlot[topic]..<assignment.firstSlot[topic + 1] where assignment.previousOwner[slot] < 0 {
                var least = candidates[0]
                for member in candidates.dropFirst() where count[member] < count[least] { least = member }
                held[least][topic].append(slot)
                fresh[least][topic] += 1
                count[least] += 1
            }
        }
    }

    /// Moves partitions along improving paths until there are none; with `freshOnly`, only
    /// partitions their holder did not own before may move.
    mutating func balance(freshOnly: Bool) {
        while let (hops, amount) = improvingPath(freshOnly: freshOnly) {
            // From the far end, so every giver still holds what the search counted on.
            for hop in hops.reversed() { move(amount, along: hop) }
        }
    }

    /// How many partitions of `topic` `member` may pass on.
    private func movable(_ member: Int, _ topic: Int, freshOnly: Bool) -> Int {
        freshOnly ? fresh[member][topic] : held[member][topic].count
    }

    /// A path from a member to one holding at least two fewer, and how many partitions to
    /// send along it at once (up to half the difference, so the ends do not swap roles).
    ///
    /// Tries members from the most loaded down, searching breadth first and taking the least
    /// loaded member reached. Members reached from a source that found nothing are not tried
    /// as sources: they hold no more than it and reach nothing it does not.
    private func improvingPath(freshOnly: Bool) -> (hops: [Hop], amount: Int)? {
        let memberCount = count.count
        let sources = (0..<memberCount).sorted { count[$0] != count[$1] ? count[$0] > count[$1] : $0 < $1 }
        var settled = [Bool](repeating: false, count: memberCount)
        var seenBy = [Int](repeating: -1, count: memberCount)
        var reachedVia = [Hop?](repeating: nil, count: memberCount)
        var queue: [Int] = []
        queue.reserveCapacity(memberCount)
        for source in sources where !settled[source] {
            if count[source] < 2 { return nil }
            seenBy[source] = source
            queue.removeAll(keepingCapacity: true)
            queue.append(source)
            var head = 0
            var target = source
            while head < queue.count {
                let member = queue[head]
                head += 1
                for topic in subscribers.indices where movable(member, topic, freshOnly: freshOnly) > 0 {
                    for next in subscribers[topic] where seenBy[next] != source {
                        seenBy[next] = source
                        reachedVia[next] = Hop(from: member, to: next, topic: topic)
                        queue.append(next)
                        if count[next] < count[target] { target = next }
                    }
                }
            }
            for member in queue { settled[member] = true }
            guard count[source] - count[target] >= 2 else { continue }

            var hops: [Hop] = []
            var amount = (count[source] - count[target]) / 2
            var member = target
            while member != source, let hop = reachedVia[member] {
                hops.append(hop)
                amount = min(amount, movable(hop.from, hop.topic, freshOnly: freshOnly))
                member = hop.from
            }
            return (hops.reversed(), amount)
        }
        return nil
    }

    /// Passes `amount` partitions of the hop's topic from `hop.from` to `hop.to`: first any
    /// that `hop.to` owned before, then any `hop.from` did not own, then those `hop.from`
    /// owned; lowest partition first within each group.
    private mutating func move(_ amount: Int, along hop: Hop) {
        let ranked = held[hop.from][hop.topic].map { slot -> (rank: Int, slot: Int) in
            let owner = assignment.previousOwner[slot]
            return (owner == hop.to ? 0 : owner == hop.from ? 2 : 1, slot)
        }.sorted { ($0.rank, $0.slot) < ($1.rank, $1.slot) }
        assert(amount <= ranked.count, "the path search counted these")

        held[hop.from][hop.topic] = ranked.dropFirst(amount).map(\.slot)
        for (rank, slot) in ranked.prefix(amount) {
            if rank < 2 { fresh[hop.from][hop.topic] -= 1 }
            if rank > 0 { fresh[hop.to][hop.topic] += 1 }
            held[hop.to][hop.topic].append(slot)
        }
        count[hop.from] -= amount
        count[hop.to] += amount
    }
}
