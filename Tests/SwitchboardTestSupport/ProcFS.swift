import Foundation

/// Reads process facts from /proc.
package enum ProcFS {
    /// Reads a whole /proc file (they report size 0, so read until end of file).
    package static func read(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// Number of open descriptors of `pid`.
    package static func descriptorCount(_ pid: pid_t) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// What each descriptor of `pid` points at, by number.
    package static func descriptors(_ pid: pid_t) -> [Int: String] {
        var result: [Int: String] = [:]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        for name in names {
            guard let fd = Int(name) else { continue }
            result[fd] = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(name)")
        }
        return result
    }

    /// Resident memory of `pid` in KiB (`VmRSS`), or nil when it is gone.
    package static func residentKiB(_ pid: pid_t) -> Int? {
        guard let status = read("/proc/\(pid)/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    /// Pids whose parent is `pid`.
    package static func children(of pid: pid_t) -> [pid_t] {
        allPIDs().filter { parent(of: $0) == pid }
    }

    /// Pids of every live process started as a worker of the master `pid` (wherever it was reparented to).
    package static func workers(ofMaster pid: pid_t) -> [pid_t] {
        allPIDs().filter { candidate in
            isAlive(candidate) && environment(of: candidate).contains("SWITCHBOARD_MASTER_PID=\(pid)")
        }
    }

    /// The environment `pid` started with (`NAME=value` entries); empty when it cannot be read.
    package static func environment(of pid: pid_t) -> [String] {
        guard let environ = read("/proc/\(pid)/environ").map({ Data($0.utf8) }) else { return [] }
        return environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Field `number` (as proc(5) counts them: 3 is the state) of a `stat` file under /proc (`<pid>` or
    /// `<pid>/task/<tid>`), or nil when it is gone. The fields are counted after the command's closing parenthesis.
    static func statField(_ entry: String, _ number: Int) -> Substring? {
        guard let stat = read("/proc/\(entry)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > number - 3 ? fields[number - 3] : nil
    }

    /// The scheduling policy of `pid`'s main thread (`stat` field 41: 0 `SCHED_OTHER`, 3 `SCHED_BATCH`,
    /// 5 `SCHED_IDLE`), or nil when it is gone.
    package static func schedulingPolicy(of pid: pid_t) -> Int? {
        schedulingPolicy(task: "\(pid)")
    }

    /// The scheduling policy of the thread at `task` (`<pid>/task/<tid>`, as `/proc/thread-self` names it).
    package static func schedulingPolicy(task: String) -> Int? {
        statField(task, 41).flatMap { Int($0) }
    }

    package static func parent(of pid: pid_t) -> pid_t? {
        statField("\(pid)", 4).flatMap { pid_t($0) }
    }

    /// Whether `pid` exists and is not a zombie.
    package static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = read("/proc/\(pid)/stat"),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.first.map { $0 != "Z" && $0 != "X" } ?? false
    }

    package static func allPIDs() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }

    /// CPU time (user + system) `pid` has used, in seconds, from `/proc/<pid>/stat`; nil when it is gone.
    package static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command name: utime is field 14 and stime 15 (1-based, as proc(5) numbers them).
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The signals `pid` ignores (`SigIgn` in `/proc/<pid>/status`), by number.
    package static func ignoredSignals(_ pid: pid_t) -> Set<Int32> {
        signalSet(pid, "SigIgn")
    }

    /// The signals sent to the process `pid` as a whole that no thread has taken yet (`ShdPnd`).
    package static func pendingSignals(_ pid: pid_t) -> Set<Int32> {
        signalSet(pid, "ShdPnd")
    }

    private static func signalSet(_ pid: pid_t, _ field: String) -> Set<Int32> {
        guard let status = read("/proc/\(pid)/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
            let mask = UInt64(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return [] }
        return Set((1...64).filter { mask & (1 << UInt64($0 - 1)) != 0 }.map(Int32.init))
    }

    /// How many threads `pid` runs.
    package static func threadCount(_ pid: pid_t) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count) ?? 0
    }
}
