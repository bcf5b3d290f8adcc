import Testing

@testable import Switchboard

@Suite struct CPUBudgetTests {
    static let hybridMounts = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """

    @Test func theSmallestQuotaAlongTheV2PathCounts() {
        let files = [
            "/sys/fs/cgroup/cpu.max": "max 100000\n",
            "/sys/fs/cgroup/app.slice/cpu.max": "150000 100000\n",
            "/sys/fs/cgroup/app.slice/web.service/cpu.max": "max 100000\n",
        ]
        let quota = CPUBudget.quota(
            cgroups: "0::/app.slice/web.service\n",
            mountinfo: "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            read: { files[$0] })
        #expect(quota == 1.5)
        #expect(CPUBudget(online: 64, allowed: 64, quota: quota).workers == 2)
    }

    @Test func aV1QuotaIsReadWhereMountinfoSaysTheCPUControllerIs() {
        let files = [
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us": "100000\n",
        ]
        let quota = CPUBudget.quota(
            cgroups: "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n", mountinfo: Self.hybridMounts,
            read: { files[$0] })
        #expect(quota == 2.5)
        let budget = CPUBudget(online: 64, allowed: 64, quota: quota)
        #expect(budget.workers == 3)
        #expect(budget.summary == "3 workers: CPU quota 2.5 of 64 CPUs")
    }

    /// Inside a cgroup namespace the mount's root is the container's own group, and /proc/self/cgroup says `/`.
    @Test func aNamespacedMountRootIsStrippedFromThePath() {
        let files = ["/sys/fs/cgroup/cpu.max": "50000 100000\n"]
        let quota = CPUBudget.quota(
            cgroups: "0::/\n", mountinfo: "30 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            read: { files[$0] })
        #expect(quota == 0.5)
        #expect(CPUBudget(online: 8, allowed: 8, quota: quota).workers == 1, "at least one worker")
    }

    @Test func noQuotaMeansTheAllowedCPUs() {
        let quota = CPUBudget.quota(
            cgroups: "0::/\n", mountinfo: "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            read: { $0 == "/sys/fs/cgroup/cpu.max" ? "max 100000\n" : nil })
        #expect(quota == nil)
        let pinned = CPUBudget(online: 4, allowed: 1, quota: nil)
        #expect(pinned.workers == 1)
        #expect(pinned.summary == "1 worker: 1 CPU allowed of 4 CPUs")
        #expect(CPUBudget(online: 2, allowed: 2, quota: nil).summary == "2 workers: 2 CPUs")
        #expect(CPUBudget(online: 8, allowed: 2, quota: 6).workers == 2, "the affinity mask caps a larger quota")
    }
}
