// SASL for the Kafka listener: SaslHandshake v1 + SaslAuthenticate with PLAIN and
// SCRAM-SHA-256 (RFC 5802 / RFC 7677). Credentials come from `user:password` pairs; SCRAM's
// salted passwords are derived once at start-up (4096 PBKDF2 iterations, random salt).
import Crypto
import Foundation

public struct SASLUsers: Sendable {
    struct ScramCredential: Sendable {
        var salt: [UInt8]
        var iterations: Int
        var storedKey: [UInt8]
        var serverKey: [UInt8]
    }
    let plain: [String: String]
    let scram: [String: ScramCredential]
    public static let mechanisms = ["PLAIN", "SCRAM-SHA-256"]

    public init(_ pairs: [(user: String, password: String)], iterations: Int = 4096) {
        var plain: [String: String] = [:]
        var scram: [String: ScramCredential] = [:]
        for (user, password) in pairs {
            plain[user] = password
            let salt = (0..<16).map { _ in UInt8.random(in: 0...255) }
            let salted = Scram.saltedPassword(password, salt: salt, iterations: iterations)
            let clientKey = Scram.hmac(salted, "Client Key")
            scram[user] = ScramCredential(salt: salt, iterations: iterations, storedKey: Array(SHA256.hash(data: clientKey)), serverKey: Scram.hmac(salted, "Server Key"))
        }
        self.plain = plain
        self.scram = scram
    }
}

enum Scram {
    static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] { hmac(key, Array(message.utf8)) }
    static func hmac(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    /// PBKDF2-HMAC-SHA-256 with one output block (32 bytes), as SCRAM's Hi().
    static func saltedPassword(_ password: String, salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = Array(password.utf8)
        var u = hmac(key, salt + [0, 0, 0, 1])
        var out = u
        for _ in 1..<iterations {
            u = hmac(key, u)
            for i in 0..<out.count { out[i] ^= u[i] }
        }
        return out
    }

    /// Splits "a=1,b=2" into its attributes.
    static func attributes(_ text: Substring) -> [Character: String] {
        var out: [Character: String] = [:]
        for part in text.split(separator: ",") where part.count >= 2 && part.dropFirst().first == "=" {
            out[part.first!] = String(part.dropFirst(2))
        }
        return out
    }
}

/// What one connection has established so far.
public struct SASLState: Sendable {
    public var authenticatedUser: String?
    var mechanism: String?
    /// SCRAM between the first and the final client message.
    var scram: (user: String, clientFirstBare: String, serverFirst: String, nonce: String)?
    /// Send the response, then close (a failed authentication).
    public var closeAfterResponse = false
    public init() {}
}

extension SASLUsers {
    /// One SaslAuthenticate step: the server's bytes, or an error message (authentication failed).
    func authenticate(_ token: [UInt8], state: inout SASLState) -> Result<[UInt8], SASLFailure> {
        switch state.mechanism {
        case "PLAIN":
            // [authzid] NUL authcid NUL passwd
            let parts = token.split(separator: 0, omittingEmptySubsequences: false)
            guard parts.count == 3 else { return .failure(SASLFailure("malformed PLAIN token")) }
            let user = String(decoding: parts[1], as: UTF8.self), password = String(decoding: parts[2], as: UTF8.self)
            guard let expected = plain[user], expected == password else { return .failure(SASLFailure("authentication failed for user '\(user)'")) }
            // An authorization id other than the user would act as someone else; as Kafka's
            // PLAIN server does, only an empty one or the user's own is accepted.
            let authzid = String(decoding: parts[0], as: UTF8.self)
            guard authzid.isEmpty || authzid == user else {
                return .failure(SASLFailure("user '\(user)' may not act as '\(authzid)' (PLAIN authorization id must be empty or the user)"))
            }
            state.authenticatedUser = user
            return .success([])
        case "SCRAM-SHA-256":
            let text = String(decoding: token, as: UTF8.self)
            if let pending = state.scram {
                // client-final: c=biws,r=nonce,p=proof
                guard let proofRange = text.range(of: ",p=") else { return .failure(SASLFailure("malformed SCRAM final message")) }
                let withoutProof = String(text[..<proofRange.lowerBound])
                let attrs = Scram.attributes(text[...])
                // RFC 5802 echoes the server's nonce; librdkafka 2.x sends its own nonce in front of
                // it. Both carry this server's fresh nonce.
                let clientNonce = Scram.attributes(pending.clientFirstBare[...])["r"] ?? ""
                guard attrs["r"] == pending.nonce || attrs["r"] == clientNonce + pending.nonce else {
                    return .failure(SASLFailure("SCRAM nonce mismatch for user '\(pending.user)'"))
                }
                guard let proof = attrs["p"].flatMap({ Data(base64Encoded: $0) }).map(Array.init), proof.count == 32,
                      let credential = scram[pending.user] else { return .failure(SASLFailure("malformed SCRAM proof from user '\(pending.user)'")) }
                let authMessage = pending.clientFirstBare + "," + pending.serverFirst + "," + withoutProof
                let signature = Scram.hmac(credential.storedKey, authMessage)
                let clientKey = zip(proof, signature).map { $0 ^ $1 }
                guard Array(SHA256.hash(data: clientKey)) == credential.storedKey else {
                    return .failure(SASLFailure("authentication failed for user '\(pending.user)'"))
                }
                state.authenticatedUser = pending.user
                state.scram = nil
                let serverSignature = Scram.hmac(credential.serverKey, authMessage)
                return .success(Array(("v=" + Data(serverSignature).base64EncodedString()).utf8))
            }
            // client-first: gs2 header "n,," then "n=user,r=nonce"
            guard text.hasPrefix("n,"), let bareStart = text.dropFirst(2).firstIndex(of: ",") else { return .failure(SASLFailure("malformed SCRAM first message")) }
            let bare = String(text[text.index(after: bareStart)...])
            let attrs = Scram.attributes(bare[...])
            guard let user = attrs["n"]?.replacingOccurrences(of: "=2C", with: ",").replacingOccurrences(of: "=3D", with: "="), let clientNonce = attrs["r"] else {
                return .failure(SASLFailure("malformed SCRAM first message"))
            }
            guard let credential = scram[user] else { return .failure(SASLFailure("authentication failed for user '\(user)'")) }
            let nonce = clientNonce + (0..<18).map { _ in String(UInt8.random(in: 16...255), radix: 16) }.joined()
            let serverFirst = "r=\(nonce),s=\(Data(credential.salt).base64EncodedString()),i=\(credential.iterations)"
            state.scram = (user, bare, serverFirst, nonce)
            return .success(Array(serverFirst.utf8))
        default:
            return .failure(SASLFailure("SaslAuthenticate before SaslHandshake chose a mechanism"))
        }
    }
}

struct SASLFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
