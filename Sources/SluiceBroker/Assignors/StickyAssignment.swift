// The input side of one cooperative-sticky assignment — members in order, topics and
// partitions numbered densely, the winning claim on each previously owned partition — plus
// the plan for the common case where every member subscribes to the same topics, and the
// cooperative step that holds back partitions changing owner. Value type, one call at a time.

/// One cooperative-sticky assignment in the making.
///
/// Everything is numbered so the planning works on arrays, not on hashed `TopicPartition`s:
/// members by their index in `members` (member order, see `AssignorMember.precedes`), topics
/// by their index in `topics`, and partitions by a slot, 0..<`slotCount`, in (topic,
/// partition) order, so sorting slots sorts partitions.
struct StickyAssignment {
    /// The members, in member order.
    let members: [AssignorMember]
    /// Every existing topic with partitions that some member subscribes to, sorted.
    let topics: [TopicName]
    /// Per topic: its first slot; its partitions are `firstSlot[t] ..< firstSlot[t + 1]`.
    let firstSlot: [Int]
    /// Per slot: its topic.
    let topicOfSlot: [Int]
    /// Per member: the topics it subscribes to (those in `topics`).
    let subscriptions: [Set<Int>]
    /// Per slot: the member whose claim on it won (highest generation, then member order),
    /// or -1 when nobody validly claims it.
    let previousOwner: [Int]
    /// Per member: the slots it won claims on, sorted.
    let owned: [[Int]]

    var slotCount: Int { topicOfSlot.count }

    init(members: [AssignorMember], partitionsPerTopic: [TopicName: Int32]) {
        let ordered = members.sorted(by: AssignorMember.precedes)
        var subscribed = Set<TopicName>()
        for member in ordered {
            for topic in member.topics where (partitionsPerTopic[topic] ?? 0) > 0 { subscribed.insert(topic) }
        }
        let topics = subscribed.sorted()
        let topicIndex = Dictionary(uniqueKeysWithValues: zip(topics, topics.indices))
        var firstSlot = [0]
        var topicOfSlot: [Int] = []
        for (index, topic) in topics.enumerated() {
            let count = Int(partitionsPerTopic[topic]!)
            topicOfSlot.append(contentsOf: repeatElement(index, count: count))
            firstSlot.append(firstSlot[index] + count)
        }
        let subscriptions = ordered.map { Set($0.topics.compactMap { topicIndex[$0] }) }

        var previousOwner = [Int](repeating: -1, count: topicOfSlot.count)
        var claimGeneration = [Int32](repeating: 0, count: topicOfSlot.count)
        for (index, member) in ordered.enumerated() {
            var lastTopic: (name: TopicName, index: Int?)?  // owned lists usually run topic by topic
            for partition in member.ownedPartitions {
                if lastTopic?.name != partition.topic { lastTopic = (partition.topic, topicIndex[partition.topic]) }
                guard let topic = lastTopic?.index, subscriptions[index].contains(topic),
                    partition.partition >= 0, Int(partition.partition) < firstSlot[topic + 1] - firstSlot[topic]
                else { continue }  // not subscribed any more, or no longer exists
                let slot = firstSlot[topic] + Int(partition.partition)
                if previousOwner[slot] >= 0 && claimGeneration[slot] >= member.generation { continue }
                previousOwner[slot] = index
                claimGeneration[slot] = member.generation
            }
        }
        var owned = [[Int]](repeating: [], count: ordered.count)
        for (slot, owner) in previousOwner.enumerated() where owner >= 0 { owned[owner].append(slot) }

        self.members = ordered
        self.topics = topics
        self.firstSlot = firstSlot
        self.topicOfSlot = topicOfSlot
        self.subscriptions = subscriptions
        self.previousOwner = previousOwner
        self.owned = owned
    }

    /// Whether every member subscribes to the same topics: Kafka's "constrained" case, which
    /// has an exact, fast solution.
    var allSubscriptionsEqual: Bool {
        subscriptions.dropFirst().allSatisfy { $0 == subscriptions[0] }
    }

    /// The plan (slots per member) when all subscriptions are equal: balanced within one,
    /// with the fewest partitions changing owner.
    ///
    /// With P partitions and M members, every member gets P / M and P % M members get one
    /// more. Members keep up to that much of what they owned; the extra slots go to members
    /// that owned more than P / M, since only they can use one without a move. The rest is
    /// dealt out to fill members up. No other split keeps more partitions where they were, so
    /// the number of moves is the minimum.
    func planForEqualSubscriptions() -> [[Int]] {
        guard !members.isEmpty else { return [] }
        let minimumQuota = slotCount / members.count
        var extraSlots = slotCount % members.count  // members that may still get minimumQuota + 1

        var plan = [[Int]](repeating: [], count: members.count)
        var kept = [Bool](repeating: false, count: slotCount)
        for index in members.indices {
            var quota = minimumQuota
            if owned[index].count > minimumQuota && extraSlots > 0 {
                quota += 1
                extraSlots -= 1
            }
            plan[index] = Array(owned[index].prefix(quota))
            for slot in plan[index] { kept[slot] = true }
        }

        // New partitions, those of departed members and those taken off over-full members.
        let pool = (0..<slotCount).filter { !kept[$0] }
        var next = 0
        for index in members.indices where plan[index].count < minimumQuota {
            let take = minimumQuota - plan[index].count
            plan[index].append(contentsOf: pool[next..<next + take])
            next += take
        }
        for index in members.indices where extraSlots > 0 && plan[index].count == minimumQuota {
            plan[index].append(pool[next])
            next += 1
            extraSlots -= 1
        }
        assert(next == pool.count, "every partition is placed")
        return plan
    }

    /// Every member's partitions in `plan`, sorted, transfers included (KIP-848's server-side
    /// assignment: the protocol revokes a moving partition before its new owner gets it).
    func withTransfers(_ plan: [[Int]]) -> [String: [TopicPartition]] {
        var result = [String: [TopicPartition]](minimumCapacity: members.count)
        for (index, slots) in plan.enumerated() where result[members[index].memberId] == nil {
            result[members[index].memberId] = slots.sorted().map {
                let topic = topicOfSlot[$0]
                return TopicPartition(topics[topic], PartitionID($0 - firstSlot[topic]))
            }
        }
        return result
    }

    /// The cooperative result of `plan`: each member's partitions, sorted, except those whose
    /// previous owner is another member. That owner sees them missing and revokes them; the
    /// follow-up rebalance hands them over.
    func withoutTransfers(_ plan: [[Int]]) -> [String: [TopicPartition]] {
        var result = [String: [TopicPartition]](minimumCapacity: members.count)
        for (index, slots) in plan.enumerated() where result[members[index].memberId] == nil {
            result[members[index].memberId] = slots.filter { previousOwner[$0] < 0 || previousOwner[$0] == index }.sorted().map {
                let topic = topicOfSlot[$0]
                return TopicPartition(topics[topic], PartitionID($0 - firstSlot[topic]))
            }
        }
        return result
    }
}
