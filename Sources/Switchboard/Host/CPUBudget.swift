/// How many CPUs this process may really use: the CPUs in its affinity mask, capped by its cgroup's CPU quota.
///
/// The count of online CPUs says nothing in a container limited to 2 CPUs on a 64-core host (nginx's
/// `worker_processes auto` and SwiftNIO's `System.coreCount` both get this wrong for a systemd `CPUQuota=`). The quota
/// is read along the process's cgroup path, the smallest on the way up: cgroup v2 `cpu.max` and cgroup v1
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us`, wherever `/proc/self/mountinfo` says those hierarchies are mounted. Go
/// 1.25, .NET and libuv's `availableParallelism` do the same.
package struct CPUBudget: Equatable, Sendable {
    /// CPUs online on the machine.
    package var online: Int
    /// CPUs in the process's affinity mask (`sched_getaffinity`: `taskset`, `CPUAffinity=`, cpuset cgroups).
    package var allowed: Int
    /// The smallest CPU quota along the cgroup path, in CPUs (2.5 = 250 ms of CPU time per 100 ms); nil: none.
    package var quota: Double?

    package init(online: Int, allowed: Int, quota: Double?) {
        self.online = max(online, 1)
        self.allowed = max(allowed, 1)
        self.quota = quota
    }

    /// The worker count `--workers auto` starts: the allowed CPUs, capped by the quota rounded up, at least 1.
    package var workers: Int {
        guard let quota else { return allowed }
        let rounded = quota.rounded(.up)
        return max(1, min(allowed, rounded >= Double(Int.max) ? allowed : Int(rounded)))
    }

    /// What was found, for the start line: "3 workers: CPU quota 2.5 of 64 CPUs".
    package var summary: String {
        "\(workers) \(workers == 1 ? "worker" : "workers"): \(limits)"
    }

    /// The limits alone: "CPU quota 2.5 of 64 CPUs", "1 CPU allowed of 4 CPUs", "2 CPUs".
    package var limits: String {
        var found: [String] = []
        if let quota { found.append("CPU quota \(Self.format(quota))") }
        if allowed < online { found.append("\(allowed) CPU\(allowed == 1 ? "" : "s") allowed") }
        let cpus = "\(online) CPU\(online == 1 ? "" : "s")"
        return found.isEmpty ? cpus : "\(found.joined(separator: ", ")) of \(cpus)"
    }

    static func format(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let whole = hundredths / 100
        let rest = hundredths % 100
        guard rest != 0 else { return "\(whole)" }
        return rest % 10 == 0 ? "\(whole).\(rest / 10)" : "\(whole).\(rest < 10 ? "0" : "")\(rest)"
    }

    /// The budget of this process.
    /// - Parameter root: Where `/proc` and `/sys` are read from: `/` but in tests, which point it at a fixture tree.
    package static func current(root: String = "/") -> CPUBudget {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        let quota = quota(
            cgroups: Syscalls.readSmallFile(base + "/proc/self/cgroup") ?? "",
            mountinfo: Syscalls.readSmallFile(base + "/proc/self/mountinfo") ?? "",
            read: { Syscalls.readSmallFile(base + $0) })
        return CPUBudget(
            online: Configuration.onlineProcessors, allowed: Syscalls.allowedCPUs().count, quota: quota)
    }

    /// The smallest quota (in CPUs) along the process's cgroup paths, from the text of `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`; `read` reads a file by its absolute path.
    package static func quota(cgroups: String, mountinfo: String, read: (String) -> String?) -> Double? {
        var smallest: Double?
        for mount in mounts(mountinfo) {
            // The process's path in this hierarchy: `0::/path` for v2, `N:cpu,cpuacct:/path` for v1's cpu.
            let path = cgroups.split(separator: "\n").lazy.compactMap { line -> Substring? in
                let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard fields.count == 3 else { return nil }
                if mount.version == 2 { return fields[0] == "0" && fields[1].isEmpty ? fields[2] : nil }
                return fields[1].split(separator: ",").contains("cpu") ? fields[2] : nil
            }.first
            guard let path else { continue }
            // Inside a cgroup namespace the mount's root is the process's own group: strip it from the path.
            var relative = String(path)
            if mount.root != "/" && relative.hasPrefix(mount.root) { relative = String(relative.dropFirst(mount.root.count)) }
            var directory = mount.point + (relative == "/" ? "" : relative)
            while true {
                if let found = limit(in: directory, version: mount.version, read: read) {
                    smallest = min(smallest ?? found, found)
                }
                guard directory.count > mount.point.count, let slash = directory.lastIndex(of: "/") else { break }
                directory = String(directory[..<slash])
                if directory.count < mount.point.count { break }
            }
        }
        return smallest
    }

    /// The quota set in one cgroup directory, in CPUs.
    static func limit(in directory: String, version: Int, read: (String) -> String?) -> Double? {
        if version == 2 {
            // `max 100000` or `150000 100000`.
            guard let text = read(directory + "/cpu.max") else { return nil }
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), quota > 0,
                period > 0
            else { return nil }
            return quota / period
        }
        guard let quotaText = read(directory + "/cpu.cfs_quota_us"), let periodText = read(directory + "/cpu.cfs_period_us"),
            let quota = Double(quotaText.filter { !$0.isWhitespace }),
            let period = Double(periodText.filter { !$0.isWhitespace }), quota > 0, period > 0
        else { return nil }
        return quota / period
    }

    struct Mount: Equatable {
        var version: Int
        var root: String
        var point: String
    }

    /// The cgroup2 mounts and the cgroup v1 mounts with the `cpu` controller, from `/proc/self/mountinfo`.
    static func mounts(_ mountinfo: String) -> [Mount] {
        var found: [Mount] = []
        for line in mountinfo.split(separator: "\n") {
            // `id parent major:minor root point options [optional...] - fstype source superoptions`
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " ")
            let right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let root = String(left[3])
            let point = String(left[4])
            switch right[0] {
            case "cgroup2":
                found.append(Mount(version: 2, root: root, point: point))
            case "cgroup" where right[2].split(separator: ",").contains("cpu"):
                found.append(Mount(version: 1, root: root, point: point))
            default:
                continue
            }
        }
        return found
    }
}
