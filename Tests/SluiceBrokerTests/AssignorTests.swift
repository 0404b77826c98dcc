// The partition assignors: Kafka's documented examples as exact vectors, properties over
// random groups, and simulated cooperative rebalances run the way Kafka clients run them
// (report what you own, take what you are given, revoke what you lost, rejoin).
import PropertyBased
import SluiceBroker
import Testing

// MARK: - Fixtures

/// Topics t0...t3 (valid names, so the `try!` cannot fail).
private let topicNames: [TopicName] = (0..<4).map { try! TopicName("t\($0)") }

/// Partitions written as Kafka prints them: `parts("t0-0", "t1-2")`.
private func parts(_ names: String...) -> [TopicPartition] {
    names.map { name in
        let dash = name.lastIndex(of: "-")!
        return TopicPartition(try! TopicName(String(name[..<dash])), PartitionID(name[name.index(after: dash)...])!)
    }
}

private func partitionCounts(_ counts: [Int], topics: Int) -> [TopicName: Int32] {
    Dictionary(uniqueKeysWithValues: (0..<topics).map { (topicNames[$0], Int32(counts[$0])) })
}

/// Problems with `result` as an assignment of `members`: a missing or unknown member id, an
/// unsorted list, a partition that is not subscribed to or does not exist, a partition in two
/// results; with `complete`, also a partition of a subscribed topic that nobody got.
private func problems(
    in result: [String: [TopicPartition]], members: [AssignorMember], partitionsPerTopic: [TopicName: Int32], complete: Bool
) -> [String] {
    var problems: [String] = []
    if Set(result.keys) != Set(members.map(\.memberId)) { problems.append("members \(result.keys.sorted()) in the result") }
    var owner: [TopicPartition: String] = [:]
    for member in members {
        let partitions = result[member.memberId] ?? []
        if partitions != partitions.sorted() { problems.append("\(member.memberId)'s list is not sorted") }
        for partition in partitions {
            if !member.topics.contains(partition.topic) { problems.append("\(member.memberId) got \(partition) but does not subscribe to it") }
            if !(0..<(partitionsPerTopic[partition.topic] ?? 0)).contains(partition.partition) { problems.append("\(member.memberId) got \(partition), which does not exist") }
            if let other = owner.updateValue(member.memberId, forKey: partition) { problems.append("\(partition) given to both \(other) and \(member.memberId)") }
        }
    }
    if complete {
        let subscribed = Set(members.flatMap(\.topics))
        for (topic, count) in partitionsPerTopic where subscribed.contains(topic) {
            for partition in 0..<count where owner[TopicPartition(topic, partition)] == nil { problems.append("\(topic)-\(partition) is unassigned") }
        }
    }
    return problems
}

private func spread(_ result: [String: [TopicPartition]]) -> Int {
    let counts = result.values.map(\.count)
    return (counts.max() ?? 0) - (counts.min() ?? 0)
}

/// A consumer group rebalancing with the cooperative sticky assignor, as Kafka clients do.
private struct CooperativeGroup {
    let partitionsPerTopic: [TopicName: Int32]
    private(set) var subscriptions: [String: [TopicName]] = [:]
    /// What each member owns between rebalances.
    private(set) var owned: [String: [TopicPartition]] = [:]
    private var generation: Int32 = 0

    init(partitionsPerTopic: [TopicName: Int32]) { self.partitionsPerTopic = partitionsPerTopic }

    var memberIds: [String] { subscriptions.keys.sorted() }
    var totalPartitions: Int { partitionsPerTopic.values.reduce(0) { $0 + Int($1) } }

    var members: [AssignorMember] {
        memberIds.map {
            AssignorMember(memberId: $0, topics: subscriptions[$0]!, ownedPartitions: owned[$0]!, generation: owned[$0]!.isEmpty ? -1 : generation)
        }
    }

    mutating func join(_ id: String, topics: [TopicName]) {
        subscriptions[id] = topics
        owned[id] = []
    }

    mutating func leave(_ id: String) {
        subscriptions[id] = nil
        owned[id] = nil
    }

    /// One rebalance. Checks that the result is well formed, independent of member order,
    /// and never hands a partition to a member while another still owns it. Every member then
    /// revokes what it lost and takes what it got.
    @discardableResult
    mutating func rebalance(sourceLocation: SourceLocation = #_sourceLocation) -> [String: [TopicPartition]] {
        let members = members
        let result = CooperativeStickyAssignor().assign(members: members, partitionsPerTopic: partitionsPerTopic)
        var found = problems(in: result, members: members, partitionsPerTopic: partitionsPerTopic, complete: false)
        if CooperativeStickyAssignor().assign(members: members.reversed(), partitionsPerTopic: partitionsPerTopic) != result {
            found.append("the result depends on the order of the members")
        }
        var ownerBefore: [TopicPartition: String] = [:]
        for (id, partitions) in owned { for partition in partitions { ownerBefore[partition] = id } }
        for (id, partitions) in result {
            for partition in partitions where ownerBefore[partition].map({ $0 != id }) ?? false {
                found.append("\(partition) given to \(id) while \(ownerBefore[partition]!) still owns it")
            }
        }
        #expect(found.isEmpty, "\(found.prefix(5))", sourceLocation: sourceLocation)
        generation += 1
        owned = result
        return result
    }

    /// A rebalance and its follow-up. Checks that the follow-up revokes nothing and leaves a
    /// complete assignment that a further rebalance would not change.
    @discardableResult
    mutating func rebalanceWithFollowUp(
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> (first: [String: [TopicPartition]], second: [String: [TopicPartition]]) {
        let first = rebalance(sourceLocation: sourceLocation)
        let second = rebalance(sourceLocation: sourceLocation)
        var found = problems(in: second, members: members, partitionsPerTopic: partitionsPerTopic, complete: true)
        for (id, partitions) in first where !Set(partitions).isSubset(of: second[id]!) {
            found.append("the follow-up took \(Set(partitions).subtracting(second[id]!)) from \(id)")
        }
        if CooperativeStickyAssignor().assign(members: members, partitionsPerTopic: partitionsPerTopic) != second {
            found.append("a third rebalance would change the assignment")
        }
        #expect(found.isEmpty, "\(found.prefix(5))", sourceLocation: sourceLocation)
        return (first, second)
    }
}

/// The fewest partitions that must change owner when a group whose members hold
/// `counts` partitions grows to `memberCount` members (quotas P / m, and P % m members at
/// P / m + 1, given first to the members that already hold more).
private func minimumMoves(counts: [Int], total: Int, memberCount: Int) -> Int {
    let floor = total / memberCount
    var slots = total % memberCount
    var moves = 0
    for count in counts.sorted(by: >) {
        var quota = floor
        if count > floor && slots > 0 {
            quota += 1
            slots -= 1
        }
        moves += max(0, count - quota)
    }
    return moves
}

// MARK: - Exact vectors

@Suite struct AssignorVectorTests {
    let t0 = topicNames[0], t1 = topicNames[1], t2 = topicNames[2], t3 = topicNames[3]

    @Test func registryFindsTheThreeAssignorsByKafkaName() {
        #expect(Assignors.all.map(\.name) == ["range", "roundrobin", "cooperative-sticky"])
        #expect(Assignors.all.map(\.rebalanceProtocol) == [.eager, .eager, .cooperative])
        #expect(Assignors.named("cooperative-sticky") is CooperativeStickyAssignor)
        #expect(Assignors.named("range") is RangeAssignor)
        #expect(Assignors.named("roundrobin") is RoundRobinAssignor)
        #expect(Assignors.named("sticky") == nil)
        #expect(Assignors.named("Range") == nil)
    }

    // Kafka's RangeAssignor documentation: C0, C1; t0, t1 with 3 partitions each.
    @Test func rangeSplitsEachTopicIntoContiguousRanges() {
        let members = ["c2", "c1"].map { AssignorMember(memberId: $0, topics: [t0, t1]) }
        let result = RangeAssignor().assign(members: members, partitionsPerTopic: [t0: 3, t1: 3])
        #expect(result == ["c1": parts("t0-0", "t0-1", "t1-0", "t1-1"), "c2": parts("t0-2", "t1-2")])
    }

    // Kafka's RoundRobinAssignor documentation, same group.
    @Test func roundRobinDealsPartitionsInTurn() {
        let members = ["c2", "c1"].map { AssignorMember(memberId: $0, topics: [t0, t1]) }
        let result = RoundRobinAssignor().assign(members: members, partitionsPerTopic: [t0: 3, t1: 3])
        #expect(result == ["c1": parts("t0-0", "t0-2", "t1-1"), "c2": parts("t0-1", "t1-0", "t1-2")])
    }

    // Kafka's RoundRobinAssignor documentation, differing subscriptions.
    @Test func roundRobinSkipsMembersNotSubscribed() {
        let members = [
            AssignorMember(memberId: "c0", topics: [t0]),
            AssignorMember(memberId: "c1", topics: [t0, t1]),
            AssignorMember(memberId: "c2", topics: [t0, t1, t2]),
        ]
        let result = RoundRobinAssignor().assign(members: members, partitionsPerTopic: [t0: 1, t1: 2, t2: 3])
        #expect(result == ["c0": parts("t0-0"), "c1": parts("t1-0"), "c2": parts("t1-1", "t2-0", "t2-1", "t2-2")])
    }

    @Test func staticMembersAreOrderedByInstanceIdAndComeFirst() {
        let allStatic = [
            AssignorMember(memberId: "a", groupInstanceId: "i2", topics: [t0]),
            AssignorMember(memberId: "b", groupInstanceId: "i1", topics: [t0]),
        ]
        #expect(RangeAssignor().assign(members: allStatic, partitionsPerTopic: [t0: 3]) == ["b": parts("t0-0", "t0-1"), "a": parts("t0-2")])
        #expect(RoundRobinAssignor().assign(members: allStatic, partitionsPerTopic: [t0: 3]) == ["b": parts("t0-0", "t0-2"), "a": parts("t0-1")])
        let mixed = [
            AssignorMember(memberId: "a", topics: [t0]),
            AssignorMember(memberId: "z", groupInstanceId: "x", topics: [t0]),
        ]
        #expect(RangeAssignor().assign(members: mixed, partitionsPerTopic: [t0: 3]) == ["z": parts("t0-0", "t0-1"), "a": parts("t0-2")])
    }

    @Test(arguments: ["range", "roundrobin", "cooperative-sticky"])
    func unknownTopicsAndEmptyGroupsGiveEmptyAssignments(name: String) throws {
        let assignor = try #require(Assignors.named(name))
        #expect(assignor.assign(members: [], partitionsPerTopic: [t0: 3]).isEmpty)
        let members = [
            AssignorMember(memberId: "c1", topics: [t3], ownedPartitions: parts("t3-0"), generation: 1),
            AssignorMember(memberId: "c2", topics: []),
        ]
        #expect(assignor.assign(members: members, partitionsPerTopic: [t0: 3, t3: 0]) == ["c1": [], "c2": []])
    }

    // Kafka's StickyAssignor documentation: C0 subscribes to t0, C1 to t0 and t1, C2 to all
    // three; t0, t1, t2 have 1, 2 and 3 partitions. Then C0 leaves.
    @Test func stickyWithDifferingSubscriptionsMatchesKafkasExample() {
        let first = [
            AssignorMember(memberId: "c0", topics: [t0]),
            AssignorMember(memberId: "c1", topics: [t0, t1]),
            AssignorMember(memberId: "c2", topics: [t0, t1, t2]),
        ]
        let counts: [TopicName: Int32] = [t0: 1, t1: 2, t2: 3]
        let result = CooperativeStickyAssignor().assign(members: first, partitionsPerTopic: counts)
        #expect(result == ["c0": parts("t0-0"), "c1": parts("t1-0", "t1-1"), "c2": parts("t2-0", "t2-1", "t2-2")])

        let afterC0Left = [
            AssignorMember(memberId: "c1", topics: [t0, t1], ownedPartitions: result["c1"]!, generation: 1),
            AssignorMember(memberId: "c2", topics: [t0, t1, t2], ownedPartitions: result["c2"]!, generation: 1),
        ]
        #expect(
            CooperativeStickyAssignor().assign(members: afterC0Left, partitionsPerTopic: counts)
                == ["c1": parts("t0-0", "t1-0", "t1-1"), "c2": parts("t2-0", "t2-1", "t2-2")])
    }

    // The example in CooperativeStickyAssignor's documentation.
    @Test func stickyJoinRevokesFirstAndHandsOverInTheFollowUp() {
        let counts: [TopicName: Int32] = [t0: 4]
        let round1 = CooperativeStickyAssignor().assign(
            members: [
                AssignorMember(memberId: "c1", topics: [t0], ownedPartitions: parts("t0-0", "t0-1", "t0-2"), generation: 3),
                AssignorMember(memberId: "c2", topics: [t0], ownedPartitions: parts("t0-3"), generation: 3),
                AssignorMember(memberId: "c3", topics: [t0]),
            ], partitionsPerTopic: counts)
        #expect(round1 == ["c1": parts("t0-0", "t0-1"), "c2": parts("t0-3"), "c3": []])
        let round2 = CooperativeStickyAssignor().assign(
            members: [
                AssignorMember(memberId: "c1", topics: [t0], ownedPartitions: parts("t0-0", "t0-1"), generation: 4),
                AssignorMember(memberId: "c2", topics: [t0], ownedPartitions: parts("t0-3"), generation: 4),
                AssignorMember(memberId: "c3", topics: [t0], ownedPartitions: [], generation: 4),
            ], partitionsPerTopic: counts)
        #expect(round2 == ["c1": parts("t0-0", "t0-1"), "c2": parts("t0-3"), "c3": parts("t0-2")])
    }

    // Kafka's StickyAssignor documentation: C0, C1, C2 over t0...t3 with 2 partitions each,
    // then C1 leaves. Only C1's partitions move.
    @Test func stickyLeaveMovesOnlyTheLeaversPartitions() {
        let members = [
            AssignorMember(memberId: "c0", topics: [t0, t1, t2, t3], ownedPartitions: parts("t0-0", "t1-1", "t3-0"), generation: 2),
            AssignorMember(memberId: "c2", topics: [t0, t1, t2, t3], ownedPartitions: parts("t1-0", "t2-1"), generation: 2),
        ]
        let result = CooperativeStickyAssignor().assign(members: members, partitionsPerTopic: [t0: 2, t1: 2, t2: 2, t3: 2])
        #expect(result == ["c0": parts("t0-0", "t0-1", "t1-1", "t3-0"), "c2": parts("t1-0", "t2-0", "t2-1", "t3-1")])
    }

    @Test(arguments: [(Int32(5), Int32(7), "c2"), (7, 5, "c1"), (5, 5, "c1")])
    func conflictingClaimsGoToTheHigherGenerationThenMemberOrder(generation1: Int32, generation2: Int32, winner: String) {
        let members = [
            AssignorMember(memberId: "c2", topics: [t0], ownedPartitions: parts("t0-0"), generation: generation2),
            AssignorMember(memberId: "c1", topics: [t0], ownedPartitions: parts("t0-0"), generation: generation1),
        ]
        let result = CooperativeStickyAssignor().assign(members: members, partitionsPerTopic: [t0: 2])
        #expect(result[winner] == parts("t0-0"))
        #expect(result[winner == "c1" ? "c2" : "c1"] == parts("t0-1"))
    }

    @Test func stickyIgnoresClaimsOnUnsubscribedOrMissingPartitions() {
        let members = [
            AssignorMember(memberId: "c1", topics: [t0], ownedPartitions: parts("t0-1", "t0-7", "t1-0", "t2-0"), generation: 4),
            AssignorMember(memberId: "c2", topics: [t0, t1], ownedPartitions: parts("t1-1"), generation: 4),
        ]
        let result = CooperativeStickyAssignor().assign(members: members, partitionsPerTopic: [t0: 2, t1: 2])
        #expect(result == ["c1": parts("t0-0", "t0-1"), "c2": parts("t1-0", "t1-1")])
    }
}

// MARK: - Properties

@Suite struct AssignorPropertyTests {
    /// Range and round robin: complete, exclusive, within subscriptions, independent of member
    /// order; range splits each topic into ranges in member order, the longer ones first;
    /// round robin with identical subscriptions deals partition i to member i % M.
    @Test(arguments: ["range", "roundrobin"])
    func eagerAssignorsCoverEveryPartitionOnce(name: String) async throws {
        let assignor = try #require(Assignors.named(name))
        await propertyCheck(
            count: 200, input: Gen.int(in: 1...10), Gen.int(in: 1...4), Gen.int(in: 1...64).array(of: 4), Gen.int(in: 0...15).array(of: 10),
            Gen.bool
        ) { memberCount, topicCount, counts, masks, identical in
            let partitionsPerTopic = partitionCounts(counts, topics: topicCount)
            let topics = Array(topicNames.prefix(topicCount))
            // Ids whose order differs from creation order: c0, c3, c6, c9, c2, ...
            let members = (0..<memberCount).map { index in
                AssignorMember(
                    memberId: "c\(index * 3 % 10)",
                    topics: identical ? topics : topics.indices.filter { masks[index] & (1 << $0) != 0 }.map { topics[$0] })
            }
            let result = assignor.assign(members: members, partitionsPerTopic: partitionsPerTopic)
            var found = problems(in: result, members: members, partitionsPerTopic: partitionsPerTopic, complete: true)
            if assignor.assign(members: members.reversed(), partitionsPerTopic: partitionsPerTopic) != result {
                found.append("the result depends on the order of the members")
            }
            let ordered = members.sorted { $0.memberId < $1.memberId }
            if name == "range" {
                for topic in topics {
                    let slices = ordered.filter { $0.topics.contains(topic) }.map { result[$0.memberId]!.filter { $0.topic == topic }.map(\.partition) }
                    guard !slices.isEmpty else { continue }
                    let sizes = slices.map(\.count)
                    if slices.flatMap({ $0 }) != Array(0..<partitionsPerTopic[topic]!) { found.append("\(topic) is not split into ranges in member order: \(slices)") }
                    if sizes != sizes.sorted(by: >) || sizes.max()! - sizes.min()! > 1 { found.append("\(topic) ranges are \(sizes) long") }
                }
            } else if identical {
                let all = topics.flatMap { topic in (0..<partitionsPerTopic[topic]!).map { TopicPartition(topic, $0) } }
                for (index, partition) in all.enumerated() where !result[ordered[index % ordered.count].memberId]!.contains(partition) {
                    found.append("\(partition) is not with member \(index % ordered.count)")
                }
                if spread(result) > 1 { found.append("counts differ by \(spread(result))") }
            }
            #expect(found.isEmpty, "\(found.prefix(5))")
        }
    }

    /// Members join and leave one at a time; every rebalance is followed by the follow-up a
    /// cooperative client triggers. No partition is ever in two results of a round or handed
    /// over before its owner revoked it; after the follow-up every partition has exactly one
    /// owner, counts are within one, and the assignment is stable.
    @Test func cooperativeStickyRebalancesStayExclusiveAndEndBalanced() async {
        await propertyCheck(
            count: 150, input: Gen.int(in: 1...4), Gen.int(in: 1...64).array(of: 4), Gen.int(in: 0...999).array(of: 1...24)
        ) { topicCount, counts, steps in
            var group = CooperativeGroup(partitionsPerTopic: partitionCounts(counts, topics: topicCount))
            let topics = Array(topicNames.prefix(topicCount))
            for (index, step) in steps.enumerated() {
                let ids = group.memberIds
                if ids.isEmpty || (step % 3 != 0 && ids.count < 10) {
                    group.join("c\(step % 100)-\(index)", topics: topics)
                } else {
                    group.leave(ids[step % ids.count])
                }
                let result = group.rebalanceWithFollowUp().second
                #expect(spread(result) <= 1, "counts \(result.mapValues(\.count))")
            }
        }
    }

    /// The same with differing subscriptions: exclusivity, completeness and stability as above;
    /// balance as far as subscriptions allow — nobody holds a partition that a member with two
    /// or more fewer could take.
    @Test func cooperativeStickyWithDifferingSubscriptionsCannotBeImprovedByOneMove() async {
        await propertyCheck(
            count: 150, input: Gen.int(in: 1...4), Gen.int(in: 1...64).array(of: 4), Gen.int(in: 0...999).array(of: 1...24)
        ) { topicCount, counts, steps in
            var group = CooperativeGroup(partitionsPerTopic: partitionCounts(counts, topics: topicCount))
            for (index, step) in steps.enumerated() {
                let ids = group.memberIds
                if ids.isEmpty || (step % 3 != 0 && ids.count < 10) {
                    let mask = step / 10 % 15 + 1
                    group.join("c\(step % 100)-\(index)", topics: (0..<topicCount).filter { mask & (1 << $0) != 0 }.map { topicNames[$0] })
                } else {
                    group.leave(ids[step % ids.count])
                }
                let result = group.rebalanceWithFollowUp().second
                var found: [String] = []
                for (giver, partitions) in result {
                    for (taker, subscription) in group.subscriptions where result[taker]!.count + 1 < partitions.count {
                        if let partition = partitions.first(where: { subscription.contains($0.topic) }) {
                            found.append("\(giver) (\(partitions.count)) could give \(partition) to \(taker) (\(result[taker]!.count))")
                        }
                    }
                }
                #expect(found.isEmpty, "\(found.prefix(5))")
            }
        }
    }

    /// Arbitrary claims — stale, conflicting, on unsubscribed topics or missing partitions —
    /// never yield an invalid result: a claimed partition goes nowhere but to the winning
    /// claimant (highest generation, then member order), and one follow-up completes it.
    @Test func cooperativeStickySurvivesArbitraryClaims() async {
        await propertyCheck(
            count: 300, input: Gen.int(in: 1...10), Gen.int(in: 1...4), Gen.int(in: 1...64).array(of: 4), Gen.int(in: 0...15).array(of: 10),
            Gen.bool, Gen.int(in: 0...300).array(of: 0...40).array(of: 10), Gen.int(in: -1...3).array(of: 10)
        ) { memberCount, topicCount, counts, masks, identical, claims, generations in
            let partitionsPerTopic = partitionCounts(counts, topics: topicCount)
            let topics = Array(topicNames.prefix(topicCount))
            let members = (0..<memberCount).map { index in
                AssignorMember(
                    memberId: "c\(index * 3 % 10)",
                    topics: identical ? topics : topics.indices.filter { masks[index] & (1 << $0) != 0 }.map { topics[$0] },
                    ownedPartitions: claims[index].map { TopicPartition(topicNames[$0 % 4], PartitionID($0 / 4 - 3)) },
                    generation: Int32(generations[index]))
            }
            var winner: [TopicPartition: AssignorMember] = [:]
            for member in members {
                for partition in member.ownedPartitions
                where member.topics.contains(partition.topic) && (0..<(partitionsPerTopic[partition.topic] ?? 0)).contains(partition.partition) {
                    if let current = winner[partition],
                        current.generation > member.generation || (current.generation == member.generation && current.memberId < member.memberId)
                    {
                        continue
                    }
                    winner[partition] = member
                }
            }

            let assignor = CooperativeStickyAssignor()
            let first = assignor.assign(members: members, partitionsPerTopic: partitionsPerTopic)
            var found = problems(in: first, members: members, partitionsPerTopic: partitionsPerTopic, complete: false)
            if assignor.assign(members: members.reversed(), partitionsPerTopic: partitionsPerTopic) != first {
                found.append("the result depends on the order of the members")
            }
            for (id, partitions) in first {
                for partition in partitions where winner[partition].map({ $0.memberId != id }) ?? false {
                    found.append("\(partition) given to \(id), but \(winner[partition]!.memberId) won the claim")
                }
            }
            let followUp = members.map {
                AssignorMember(memberId: $0.memberId, topics: $0.topics, ownedPartitions: first[$0.memberId]!, generation: 4)
            }
            let second = assignor.assign(members: followUp, partitionsPerTopic: partitionsPerTopic)
            found += problems(in: second, members: followUp, partitionsPerTopic: partitionsPerTopic, complete: true)
            if identical && spread(second) > 1 { found.append("counts \(second.mapValues(\.count)) after the follow-up") }
            #expect(found.isEmpty, "\(found.prefix(5))")
        }
    }

    /// Members join one at a time; at each join, the partitions that change owner across the
    /// rebalance and its follow-up are exactly the fewest needed to reach balance.
    @Test func cooperativeStickyJoinMovesTheMinimum() async {
        await propertyCheck(
            count: 200, input: Gen.int(in: 1...4), Gen.int(in: 1...64).array(of: 4), Gen.int(in: 0...999).array(of: 1...10)
        ) { topicCount, counts, steps in
            var group = CooperativeGroup(partitionsPerTopic: partitionCounts(counts, topics: topicCount))
            let topics = Array(topicNames.prefix(topicCount))
            for (index, step) in steps.enumerated() {
                let before = group.owned
                group.join("c\(step % 100)-\(index)", topics: topics)
                let after = group.rebalanceWithFollowUp().second
                var ownerAfter: [TopicPartition: String] = [:]
                for (id, partitions) in after { for partition in partitions { ownerAfter[partition] = id } }
                let moved = before.reduce(0) { sum, entry in sum + entry.value.filter { ownerAfter[$0] != entry.key }.count }
                let expected = minimumMoves(counts: before.values.map(\.count), total: group.totalPartitions, memberCount: before.count + 1)
                #expect(moved == expected, "joining a group holding \(before.values.map(\.count).sorted())")
            }
        }
    }

    /// A group of 2-10 members loses members one at a time: each time, every remaining member
    /// keeps everything it had, in both rounds.
    @Test func cooperativeStickyLeaveMovesOnlyTheLeaversPartitions() async {
        await propertyCheck(
            count: 200, input: Gen.int(in: 1...4), Gen.int(in: 1...64).array(of: 4), Gen.int(in: 2...10), Gen.int(in: 0...999).array(of: 10)
        ) { topicCount, counts, memberCount, steps in
            var group = CooperativeGroup(partitionsPerTopic: partitionCounts(counts, topics: topicCount))
            for (index, step) in steps.prefix(memberCount).enumerated() {
                group.join("c\(step % 100)-\(index)", topics: Array(topicNames.prefix(topicCount)))
            }
            group.rebalanceWithFollowUp()
            for step in steps.prefix(memberCount - 1) {
                let ids = group.memberIds
                group.leave(ids[step % ids.count])
                let before = group.owned
                let (first, second) = group.rebalanceWithFollowUp()
                for (id, partitions) in before {
                    #expect(Set(partitions).isSubset(of: first[id]!) && Set(partitions).isSubset(of: second[id]!), "\(id) lost partitions")
                }
            }
        }
    }
}
