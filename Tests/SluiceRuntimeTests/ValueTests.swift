// Value and ValueObject: ordered map semantics (small and indexed), equality, helpers.
import PropertyBased
import SluiceRuntime
import Testing

@Suite struct ValueTests {
    @Test func objectKeepsInsertionOrderAndReplacesInPlace() {
        var o = ValueObject()
        o["b"] = 1
        o["a"] = 2
        o["c"] = 3
        o["a"] = "two"
        #expect(o.keys == ["b", "a", "c"])
        #expect(o["a"] == "two")
        o["b"] = nil
        #expect(o.keys == ["a", "c"])
        #expect(o["b"] == nil)
        #expect(o.count == 2)
    }

    /// Against a model (an array of pairs), through the switch from linear search to the index
    /// and back.
    @Test func objectMatchesAModelAcrossTheIndexThreshold() async {
        let ops = zip(Gen.int(in: 0...2), Gen.int(in: 0...20), Gen.int(in: 0...1000)).array(of: 0...120)
        await propertyCheck(count: 200, input: ops) { ops in
            var o = ValueObject()
            var model: [(String, Int64)] = []
            for (kind, k, v) in ops {
                let key = "k\(k)"
                if kind < 2 {
                    o[key] = .int(Int64(v))
                    if let i = model.firstIndex(where: { $0.0 == key }) { model[i].1 = Int64(v) } else { model.append((key, Int64(v))) }
                } else {
                    o[key] = nil
                    model.removeAll { $0.0 == key }
                }
            }
            #expect(o.keys == model.map(\.0))
            #expect(o.values == model.map { .int($0.1) })
            for k in 0...20 {
                #expect(o["k\(k)"] == model.first { $0.0 == "k\(k)" }.map { .int($0.1) })
            }
        }
    }

    @Test func objectEqualityIgnoresOrder() {
        let a: Value = ["x": 1, "y": [1, 2]]
        let b: Value = ["y": [1, 2], "x": 1]
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a != ["x": 1, "y": [2, 1]])
        #expect(a != ["x": 1])
        #expect(Value.int(1) != .double(1))
    }

    @Test func helpers() {
        let v = json(#"{"user": {"name": "ada"}, "n": 3, "list": [1, 2.5], "f": 2.0}"#)
        #expect(v["user"]?["name"]?.asString == "ada")
        #expect(v["n"]?.asDouble == 3)
        #expect(v["list"]?[1]?.asDouble == 2.5)
        #expect(v["list"]?[2] == nil)
        #expect(v["f"]?.asInt == 2)
        #expect(v["missing"] == nil)
        #expect(v["n"]?.asString == nil)
        #expect(v.description == #"{"user":{"name":"ada"},"n":3,"list":[1,2.5],"f":2.0}"#)
        #expect(Value.null.isTruthy == false)
        #expect(Value.string("").isTruthy == false)
        #expect(Value.double(.nan).isTruthy == false)
        #expect(Value.array([]).isTruthy)
    }
}
