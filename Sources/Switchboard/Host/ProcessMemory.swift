/// A process's unique memory (USS): the pages only it maps, private clean plus private dirty, from
/// `/proc/<pid>/smaps_rollup`. Unlike RSS it leaves out pages shared copy-on-write with other workers, so a worker
/// is judged by what it alone holds.
package enum ProcessMemory {
    /// The unique bytes of `pid`, or nil when the kernel would not say (the process is gone, no smaps_rollup).
    package static func uniqueBytes(_ pid: Int32) -> UInt64? {
        Syscalls.readSmallFile("/proc/\(pid)/smaps_rollup").flatMap(uniqueBytes(smapsRollup:))
    }

    /// Private_Clean + Private_Dirty of an `smaps_rollup` text, in bytes.
    package static func uniqueBytes(smapsRollup text: String) -> UInt64? {
        var total: UInt64 = 0
        var found = 0
        for line in text.split(separator: "\n") where line.hasPrefix("Private_Clean:") || line.hasPrefix("Private_Dirty:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kilobytes = UInt64(fields[1]) else { return nil }
            total &+= kilobytes * 1024
            found += 1
        }
        return found == 2 ? total : nil
    }
}
