// Auth tokens and channel rules. Tokens are JWTs (HS256 with a shared key, RS256 with a key
// pair) that the gateway signs when a login hook vouches for a client, or that another
// service signed and the client presents (in `#handshake`, `#authenticate` or the upgrade's
// `Authorization: Bearer` header). Rules say, by channel pattern, who may subscribe and
// publish: anyone, any authenticated socket, or a token whose claim has a given value.
import Crypto
import _CryptoExtras
import Foundation
import SluiceComponents

/// A token whose signature checked out, with its claims.
public struct VerifiedToken: Sendable {
    public var claims: ValueObject
    /// `exp`, in seconds since 1970, when the token has one.
    public var expiry: Int64?
    public var isExpired: Bool { expiry.map { $0 <= Int64(Date().timeIntervalSince1970) } ?? false }

    public init(claims: ValueObject, expiry: Int64?) {
        self.claims = claims
        self.expiry = expiry
    }
}

public struct GatewayAuth: Sendable {
    public enum Key: Sendable {
        case hs256([UInt8])
        case rs256(public: _RSA.Signing.PublicKey, private: _RSA.Signing.PrivateKey?)
    }
    public var key: Key?
    /// Lifetime of the tokens the gateway signs.
    public var expirySeconds: Int64 = 86_400

    public init(key: Key? = nil) { self.key = key }

    /// An RS256 key from a PEM file: a private key (the gateway can then sign) or a public key
    /// (it only verifies).
    public static func rs256(pem: String) throws -> Key {
        if let priv = try? _RSA.Signing.PrivateKey(pemRepresentation: pem) { return .rs256(public: priv.publicKey, private: priv) }
        return .rs256(public: try _RSA.Signing.PublicKey(pemRepresentation: pem), private: nil)
    }

    /// Checks a token's signature and times; the error is what SocketCluster clients expect.
    public func verify(_ token: String, now: Int64 = Int64(Date().timeIntervalSince1970)) -> Result<VerifiedToken, SCError> {
        guard let key else {
            return .failure(SCError(name: "AuthTokenInvalidError", message: "this server verifies no auth tokens (no auth key is configured)", extra: [("isBadToken", Array("true".utf8))]))
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Self.base64url(parts[0]), let payload = Self.base64url(parts[1]), let signature = Self.base64url(parts[2]),
              case .object(let h)? = try? JSON.parse(header), case .string(let alg)? = h["alg"] else {
            return .failure(Self.invalid("the auth token is not a JWT"))
        }
        let signed = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        switch (key, alg) {
        case (.hs256(let secret), "HS256"):
            guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: SymmetricKey(data: secret)) else {
                return .failure(Self.invalid("invalid signature"))
            }
        case (.rs256(let pub, _), "RS256"):
            guard pub.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: signed), padding: .insecurePKCS1v1_5) else {
                return .failure(Self.invalid("invalid signature"))
            }
        default:
            return .failure(Self.invalid("the token is signed with \(alg), which this server does not accept"))
        }
        guard case .object(let claims)? = try? JSON.parse(payload) else { return .failure(Self.invalid("the token's claims are not a JSON object")) }
        let exp = claims["exp"].flatMap(Self.seconds)
        if let exp, exp <= now {
            return .failure(SCError(name: "AuthTokenExpiredError", message: "jwt expired", extra: [("expiry", Array(Self.isoDate(exp).utf8)), ("isBadToken", Array("true".utf8))]))
        }
        if let nbf = claims["nbf"].flatMap(Self.seconds), nbf > now {
            return .failure(SCError(name: "AuthTokenNotBeforeError", message: "jwt not active", extra: [("date", Array(Self.isoDate(nbf).utf8)), ("isBadToken", Array("false".utf8))]))
        }
        return .success(VerifiedToken(claims: claims, expiry: exp))
    }

    /// Signs `claims` (adding `iat` and `exp`); nil when the key cannot sign.
    public func sign(_ claims: ValueObject, now: Int64 = Int64(Date().timeIntervalSince1970)) throws -> String? {
        var c = claims
        if c["iat"] == nil { c["iat"] = .int(now) }
        if c["exp"] == nil { c["exp"] = .int(now + expirySeconds) }
        let payload = Self.base64url(JSON.serialize(.object(c)))
        switch key {
        case .hs256(let secret)?:
            let input = Self.base64url(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + payload
            let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: secret))
            return input + "." + Self.base64url(Array(mac))
        case .rs256(_, let priv?)?:
            let input = Self.base64url(Array(#"{"alg":"RS256","typ":"JWT"}"#.utf8)) + "." + payload
            let sig = try priv.signature(for: SHA256.hash(data: Array(input.utf8)), padding: .insecurePKCS1v1_5)
            return input + "." + Self.base64url(Array(sig.rawRepresentation))
        default:
            return nil
        }
    }

    static func invalid(_ message: String) -> SCError {
        SCError(name: "AuthTokenInvalidError", message: message, extra: [("isBadToken", Array("true".utf8))])
    }

    /// A JWT NumericDate: whole seconds, or a fraction of one rounded down.
    static func seconds(_ v: Value) -> Int64? {
        if let i = v.asInt { return i }
        guard let d = v.asDouble, d.isFinite, abs(d) < 9e15 else { return nil }
        return Int64(d.rounded(.down))
    }

    static func isoDate(_ seconds: Int64) -> String {
        "\"" + ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds))) + "\""
    }

    static func base64url<S: StringProtocol>(_ s: S) -> [UInt8]? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t).map { Array($0) }
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

extension SCError: Error {
    /// Whether the client should forget the token (SocketCluster's `isBadToken`).
    public var isBadToken: Bool { extra.contains { $0.0 == "isBadToken" && $0.1 == Array("true".utf8) } }
}

// MARK: Rules

/// Who may do something on a channel.
public enum ChannelAccess: Sendable, Equatable {
    case anyone
    case authenticated
    case nobody
    /// A token whose claim `name` equals `value`.
    case claim(String, Value)

    /// "anyone", "authenticated", "nobody" or "claim NAME=VALUE" (VALUE as JSON, or a bare word).
    public init?(_ text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        switch t {
        case "anyone": self = .anyone
        case "authenticated": self = .authenticated
        case "nobody": self = .nobody
        default:
            guard t.hasPrefix("claim "), let eq = t.firstIndex(of: "=") else { return nil }
            let name = t[t.index(t.startIndex, offsetBy: 6)..<eq].trimmingCharacters(in: .whitespaces)
            let raw = String(t[t.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, !raw.isEmpty else { return nil }
            self = .claim(name, (try? JSON.parse(raw)) ?? .string(raw))
        }
    }

    func allows(_ token: VerifiedToken?) -> Bool {
        switch self {
        case .anyone: return true
        case .nobody: return false
        case .authenticated: return token != nil
        case .claim(let name, let value): return token?.claims[name] == value
        }
    }

    var description: String {
        switch self {
        case .anyone: return "anyone"
        case .nobody: return "nobody"
        case .authenticated: return "an auth token"
        case .claim(let name, let value): return "an auth token with \(name)=\(String(decoding: JSON.serialize(value), as: UTF8.self))"
        }
    }
}

public struct ChannelRule: Sendable {
    /// A channel name where `*` matches any run of characters.
    public var pattern: String
    public var subscribe: ChannelAccess
    public var publish: ChannelAccess

    public init(pattern: String, subscribe: ChannelAccess = .anyone, publish: ChannelAccess = .anyone) {
        self.pattern = pattern
        self.subscribe = subscribe
        self.publish = publish
    }
}

/// The first rule whose pattern matches a channel decides; with none, anyone may.
public struct ChannelRules: Sendable {
    public enum Action: Sendable { case subscribe, publish }
    public var rules: [ChannelRule]

    public init(_ rules: [ChannelRule] = []) { self.rules = rules }

    public func denies(_ action: Action, channel: String, token: VerifiedToken?) -> SCError? {
        guard let rule = rules.first(where: { Glob.matches($0.pattern, channel) }) else { return nil }
        let access = action == .subscribe ? rule.subscribe : rule.publish
        if access.allows(token) { return nil }
        let verb = action == .subscribe ? "subscribing to" : "publishing to"
        if access == .nobody { return SCError(name: "ForbiddenError", message: "\(verb) \(channel) is not allowed (rule '\(rule.pattern)')") }
        return SCError(name: "ForbiddenError", message: "\(verb) \(channel) needs \(access.description) (rule '\(rule.pattern)')")
    }
}
