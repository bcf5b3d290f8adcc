/// A command for a running master, one line on its control socket (`switchboard status`, `reload`, `scale`, `stop`).
public enum ControlCommand: Equatable, Sendable {
    case status(json: Bool)
    case reload
    case stop
    /// Exactly this many workers.
    case scale(to: Int)
    /// This many more (positive) or fewer (negative).
    case scaleBy(Int)
    /// Upgrade the master in place to the build on disk (then the workers, unless `masterOnly`).
    case upgrade(masterOnly: Bool)

    /// The longest line the master reads.
    public static let maxLine = 256

    /// Parses one line (without its newline).
    /// - Throws: ``SwitchboardError`` (usage) naming what is wrong.
    public init(line: String) throws(SwitchboardError) {
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        switch (words.first.map(String.init), words.count) {
        case ("status", 1): self = .status(json: false)
        case ("status", 2) where words[1] == "--json" || words[1] == "json": self = .status(json: true)
        case ("reload", 1): self = .reload
        case ("stop", 1): self = .stop
        case ("upgrade", 1): self = .upgrade(masterOnly: false)
        case ("upgrade", 2) where words[1] == "--master-only": self = .upgrade(masterOnly: true)
        case ("scale", 2):
            let argument = words[1]
            if argument.hasPrefix("+") || argument.hasPrefix("-") {
                guard let delta = Int(argument), delta != 0, abs(delta) <= Configuration.maxWorkers else {
                    throw SwitchboardError(
                        .usage, "scale \(argument): pass +K or -K with K from 1 to \(Configuration.maxWorkers)")
                }
                self = .scaleBy(delta)
            } else {
                guard let count = Int(argument), (1...Configuration.maxWorkers).contains(count) else {
                    throw SwitchboardError(
                        .usage,
                        "scale \(argument): pass a worker count from 1 to \(Configuration.maxWorkers), +K or -K")
                }
                self = .scale(to: count)
            }
        default:
            throw SwitchboardError(
                .usage, "unknown command '\(line.prefix(40))': pass status, status --json, reload, scale <n|+k|-k>, upgrade [--master-only] or stop")
        }
    }

    /// The line that says it.
    public var line: String {
        switch self {
        case .status(let json): json ? "status --json" : "status"
        case .reload: "reload"
        case .stop: "stop"
        case .scale(let count): "scale \(count)"
        case .scaleBy(let delta): "scale \(delta > 0 ? "+" : "")\(delta)"
        case .upgrade(let masterOnly): masterOnly ? "upgrade --master-only" : "upgrade"
        }
    }
}

/// What `switchboard status` shows: the master and one entry per worker (`pm2 ls`, `pumactl stats`).
public struct MasterStatus: Codable, Equatable, Sendable {
    public struct Worker: Codable, Equatable, Sendable {
        public var id: Int
        public var pid: Int32
        public var slot: Int
        public var generation: Int
        /// `starting`, `ready`, `draining` or `exiting`.
        public var state: String
        public var uptimeSeconds: Double
        /// Times this slot's worker was restarted after an unintended exit.
        public var restarts: Int
        /// Connections open in the worker (its last report plus what it received since).
        public var openConnections: Int
        /// Connections waiting in its queue.
        public var queuedConnections: Int
        /// Connections the master handed it.
        public var dispatched: UInt64
        public var cpuSeconds: Double
        public var residentBytes: Int
        /// The build the worker runs (``Cluster/build`` of its program, from its hello); nil before its hello.
        public var build: String?
        /// Its unique memory (USS) at the last sample, sampled only with `--max-worker-memory`.
        public var uniqueBytes: Int?
    }

    public var version: String
    /// The master's own build (``Cluster/build``): it keeps it until it restarts, whatever its workers run.
    public var build: String?
    /// The file every worker is started from (``Configuration/workerExecutable``).
    public var workerExecutable: String?
    public var pid: Int32
    public var mode: String
    public var port: Int
    public var uptimeSeconds: Double
    /// `running`, `stop announced`, `stopping`.
    public var state: String
    /// nil, or `generation N` while a rolling reload runs.
    public var reload: String?
    public var targetWorkers: Int
    public var readyWorkers: Int
    /// Connections waiting in the listener's accept queue, and its limit (nil where the kernel does not say).
    public var backlogDepth: Int?
    public var backlogLimit: Int?
    /// Connections handed to workers.
    public var dispatched: UInt64
    /// Connections taken back from a worker's queue (it died or stalled).
    public var takenBack: UInt64
    /// Connections sent again after they were taken back or given back.
    public var redispatched: UInt64
    /// Of those taken back, the ones taken from stalled workers (``Configuration/stealAfter``).
    public var stolen: UInt64
    public var workers: [Worker]
    /// The CPUs the master may use, found at start: "CPU quota 2.5 of 64 CPUs" (the default worker count comes from it).
    public var cpus: String?
    /// The last recycle begun: its reason and worker ("requests (worker 3)"); nil before the first.
    public var lastRecycle: String?
    /// The last upgrade of the master in place (`switchboard upgrade`); nil before the first.
    public var upgrade: Upgrade? = nil

    /// An upgrade of the master in place and how it went.
    public struct Upgrade: Codable, Equatable, Sendable {
        /// Its number in the master's life (counted across its images).
        public var sequence: Int
        /// `checking`, `done`, `failed` or `rolled back`.
        public var result: String
        /// Why it failed or rolled back; what comes next when it is done.
        public var detail: String
        /// The master's build before it.
        public var fromBuild: String
        /// The master's build after it (when done).
        public var toBuild: String? = nil
        /// From the request to the new image serving (when done or rolled back).
        public var milliseconds: Int? = nil
    }

    /// The table `switchboard status` prints.
    public var table: String {
        func seconds(_ value: Double) -> String {
            let whole = Int(value)
            if whole >= 3600 { return "\(whole / 3600)h\(whole % 3600 / 60)m" }
            if whole >= 60 { return "\(whole / 60)m\(whole % 60)s" }
            return "\(whole)s"
        }
        func megabytes(_ bytes: Int) -> String {
            let tenths = bytes * 10 / (1024 * 1024)
            return "\(tenths / 10).\(tenths % 10)M"
        }
        var lines: [String] = []
        let backlog = backlogDepth.map { depth in "\(depth)/\(backlogLimit.map(String.init) ?? "?")" } ?? "n/a"
        lines.append(
            "switchboard \(build ?? version)  pid \(pid)  \(mode) on port \(port)  up \(seconds(uptimeSeconds))  \(state)"
                + (reload.map { "  reloading (\($0))" } ?? ""))
        lines.append(
            "workers \(readyWorkers)/\(targetWorkers) ready  backlog \(backlog)  dispatched \(dispatched)"
                + "  taken back \(takenBack) (stolen \(stolen))  re-dispatched \(redispatched)")
        if let workerExecutable { lines.append("workers start from \(workerExecutable)") }
        if let cpus { lines.append("cpus: \(cpus)") }
        if let lastRecycle { lines.append("last recycle: \(lastRecycle)") }
        if let upgrade {
            let took = upgrade.milliseconds.map { " in \($0) ms" } ?? ""
            let builds = upgrade.toBuild.map { "\(upgrade.fromBuild) -> \($0)" } ?? "from \(upgrade.fromBuild)"
            lines.append("last upgrade: \(upgrade.sequence) \(upgrade.result) (\(builds)\(took)): \(upgrade.detail)")
        }
        let header = [
            "id", "pid", "gen", "state", "uptime", "restarts", "open", "queued", "dispatched", "cpu", "rss", "uss",
            "build",
        ]
        var rows = [header]
        for worker in workers {
            rows.append([
                "\(worker.id)", "\(worker.pid)", "\(worker.generation)", worker.state, seconds(worker.uptimeSeconds),
                "\(worker.restarts)", "\(worker.openConnections)", "\(worker.queuedConnections)", "\(worker.dispatched)",
                String(format2: worker.cpuSeconds), megabytes(worker.residentBytes),
                worker.uniqueBytes.map(megabytes) ?? "-", worker.build ?? "-",
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let cells = row.indices.map { column in
                let cell = row[column]
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column == 3 || column == header.count - 1 ? cell + pad : pad + cell
            }
            lines.append(cells.joined(separator: "  "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    /// `value` with two decimals, without Foundation.
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        self = "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
