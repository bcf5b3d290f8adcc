import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// `docs/deploy/`: there is no container engine here, so the examples are checked against the program instead:
    /// the Kubernetes manifest is parsed, its arguments are run by the real binary, its probe paths are asked of the
    /// real health server, and the numbers that depend on each other (probe period, shutdown delay, drain timeout,
    /// grace period) are checked. The Dockerfile's command must be the manifest's arguments. So neither can drift.
    @Suite struct DeployExamples {
        struct Manifest: Decodable {
            var args: [String]
            var ports: [String: Int]
            var readiness: Probe
            var liveness: Probe
            var grace: Double
            var cpuLimit: String

            struct Probe: Decodable {
                var path: String
                var port: String
                var period: Double
                var failures: Double
            }
        }

        static var deploy: URL { SystemdSandbox.repositoryRoot.appendingPathComponent("docs/deploy") }

        /// The manifest's Deployment, read by PyYAML (the first python3 that has it: PATH's, or Debian's).
        static func manifest() throws -> Manifest? {
            let script = """
                import json, sys, yaml
                docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "Deployment"]
                spec = docs[0]["spec"]["template"]["spec"]
                c = spec["containers"][0]
                def probe(p): return {"path": p["httpGet"]["path"], "port": str(p["httpGet"]["port"]),
                                      "period": p.get("periodSeconds", 10), "failures": p.get("failureThreshold", 3)}
                print(json.dumps({"args": c["args"], "ports": {p["name"]: p["containerPort"] for p in c["ports"]},
                                  "readiness": probe(c["readinessProbe"]), "liveness": probe(c["livenessProbe"]),
                                  "grace": spec["terminationGracePeriodSeconds"],
                                  "cpuLimit": str(c["resources"]["limits"]["cpu"])}))
                """
            for python in ["/usr/bin/env", "/usr/bin/python3"] {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: python)
                process.arguments = (python == "/usr/bin/env" ? ["python3"] : []) + [
                    "-c", script, deploy.appendingPathComponent("deployment.yaml").path,
                ]
                let output = Pipe()
                process.standardOutput = output
                process.standardError = FileHandle.nullDevice
                try process.run()
                let data = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                if process.terminationStatus == 0 { return try JSONDecoder().decode(Manifest.self, from: data) }
            }
            return nil
        }

        /// The value after `flag` in `arguments`.
        static func value(_ flag: String, _ arguments: [String]) -> String? {
            guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
            return arguments[index + 1]
        }

        @Test func theKubernetesManifestAgreesWithTheProgram() throws {
            guard let manifest = try Self.manifest() else {
                Issue.record("PyYAML is missing: run 'bash Scripts/bootstrap.sh yaml'")
                return
            }
            let args = manifest.args
            let port = try #require(Self.value("--port", args).flatMap(Int.init))
            let health = try #require(Self.value("--health", args))
            let healthPort = try #require(Int(health.split(separator: ":").last ?? ""))
            let shutdownDelay = try #require(Self.value("--shutdown-delay", args).flatMap(Double.init))
            let drainTimeout = try #require(Self.value("--drain-timeout", args).flatMap(Double.init))
            #expect(manifest.ports["http"] == port, "the http containerPort is the --port")
            #expect(manifest.ports["health"] == healthPort, "the health containerPort is the --health port")
            #expect(manifest.readiness.port == "health" && manifest.liveness.port == "health")
            #expect(
                manifest.readiness.period * manifest.readiness.failures < shutdownDelay,
                "the endpoint is removed (readiness period × failures) before the shutdown delay ends")
            #expect(manifest.grace > shutdownDelay + drainTimeout, "the grace period covers the delay and the drain")
            #expect(args.firstIndex(of: "--workers") == nil, "the worker count comes from the CPU limit")

            // The real binary takes these arguments (ports made free ones) and its health server answers the probes.
            var local = args
            local[local.firstIndex(of: "--port")! + 1] = "0"
            let free = try freePort()
            local[local.firstIndex(of: "--health")! + 1] = "127.0.0.1:\(free)"
            local[local.firstIndex(of: "--shutdown-delay")! + 1] = "1"  // the stop below need not wait 10 s
            let server = try SwitchboardProcess.start(local)
            defer { server.cleanUp() }
            #expect(try get(port: free, path: manifest.readiness.path).status == 200, "\(manifest.readiness.path)")
            #expect(try get(port: free, path: manifest.liveness.path).status == 200, "\(manifest.liveness.path)")
            #expect(try get(port: server.port).status == 200)
            server.stopAndCheckNoOrphans()
        }

        @Test func theDockerfileRunsTheManifestsArguments() throws {
            let text = try String(
                contentsOf: Self.deploy.appendingPathComponent("Dockerfile"), encoding: .utf8)
            func jsonArray(after keyword: String) throws -> [String] {
                let line = try #require(text.split(separator: "\n").first { $0.hasPrefix(keyword + " [") })
                return try JSONDecoder().decode([String].self, from: Data(line.dropFirst(keyword.count + 1).utf8))
            }
            let command = try jsonArray(after: "CMD")
            let entry = try jsonArray(after: "ENTRYPOINT")
            #expect(text.contains("COPY --from=build /switchboard \(entry[0])"), "the entry point is the copied binary")
            if let manifest = try Self.manifest() { #expect(command == manifest.args) }
            let exposed = try #require(text.split(separator: "\n").first { $0.hasPrefix("EXPOSE ") })
            let port = try #require(Self.value("--port", command))
            let health = try #require(Self.value("--health", command)?.split(separator: ":").last)
            #expect(exposed == "EXPOSE \(port) \(health)")
        }

        /// A port that was free a moment ago (bound to 0, then closed).
        func freePort() throws -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
                }
            }
            try #require(bound)
            return Int(UInt16(bigEndian: address.sin_port))
        }
    }
}
