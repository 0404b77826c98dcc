// The login hook: an HTTP endpoint of the application that checks credentials. The gateway
// POSTs what the client sent with its `login` invoke; 200 with a JSON object answers with the
// claims for the token, anything else refuses (its body, if short, is the reason shown).
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceComponents

enum LoginHook {
    static func ask(_ url: String, _ credentials: [UInt8]) async throws -> ValueObject {
        guard let target = URL(string: url) else { throw SCError(name: "LoginError", message: "the login hook \(url) is not a URL") }
        var request = URLRequest(url: target, timeoutInterval: 10)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(credentials)
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            let reason = String(decoding: data.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw SCError(name: "LoginError", message: "login refused (\(status))\(reason.isEmpty ? "" : ": " + reason)")
        }
        guard case .object(let claims)? = try? JSON.parse(Array(data)) else {
            throw SCError(name: "LoginError", message: "the login hook answered 200 without a JSON object of claims")
        }
        return claims
    }
}
