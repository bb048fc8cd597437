import ArgumentParser
import NecoCore
import NecoImage
import NecoModel
import NecoTrain

#if canImport(Glibc)
import Glibc
#endif

/// `neco train-bench`: times one NeCo-style training step and, when the reference PyTorch
/// environment exists, the same step in PyTorch (scripts/bench_train_torch.py), then prints the ratio.
struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-bench",
        abstract: "Training-step throughput: views/s, per-phase times and peak RSS, next to PyTorch.",
        discussion: """
            One step = teacher forward (no grad) + student forward and backward on images × views views, a dense \
            MSE between student and teacher patch embeddings, gradient clipping off, EMA, AdamW. ViT-S/14 with 4 \
            registers and random weights (the cost equals trained ones). PyTorch runs afterwards in its own \
            process with the same thread count when \(Self.defaultPython) (or $NECO_REF_VENV/bin/python) exists.
            """)
    static let defaultPython = "~/.cache/neco-ref/bin/python"

    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Option(help: "Images per step.") var images: Int = 8
    @Option(help: "Views per image.") var views: Int = 2
    @Option(help: "Square view size (multiple of 14).") var size: Int = 224
    @Option(help: "Timed steps after one warm-up step (median reported).") var steps: Int = 3
    @Flag(help: "Put NeCo's projection head (384 → 2048 → 2048 → 256, L2) on student and teacher.") var head = false
    @Option(help: "Student stochastic-depth rate (NeCo uses 0.1; PyTorch's reference step has none).") var dropPath: Float = 0
    @Option(help: "Train only the last N blocks (0 = everything).") var last: Int = 0
    @Option(help: "Rounds of (libneco steps, PyTorch process), medians reported.") var rounds: Int = 1
    @Flag(help: "Skip the PyTorch run.") var noTorch = false
    @Flag(help: "After the timed steps, run --steps more with libneco's time per kernel class recorded (forward and backward) and print it.")
    var profile = false
    @OptionGroup var memory: TrainingMemoryOptions
    @Flag(help: "Time a full NeCo step instead: data loading, 2 global (--size) + 4 local (--local-size) crops per image, the NeCo objective, projection heads, drop path 0.1.")
    var neco = false
    @Option(help: "Local crop size for --neco.") var localSize: Int = 98
    @Option(help: "Image folder for --neco (default: synthetic 320×256 images in memory).") var data: String?

    func run() throws {
        try memory.check()
        if let t = threads {
            guard t >= 1 && t <= 256 else { throw NecoError.invalidArgument("--threads must be in 1...256") }
            Threads.setCount(t)
        }
        if neco { return try runNeCo() }
        guard images >= 1, views >= 1, images * views <= 512 else { throw NecoError.invalidArgument("bad --images / --views") }
        guard steps >= 1 else { throw NecoError.invalidArgument("--steps must be ≥ 1") }
        guard rounds >= 1 else { throw NecoError.invalidArgument("--rounds must be ≥ 1") }
        guard last >= 0, last <= 12 else { throw NecoError.invalidArgument("--last must be in 0...12") }
        let n = images * views
        var rng = NecoRNG(seed: 42)
        let model = try randomBenchmarkModel(config: .dinov2Small(registers: 4), rng: &rng)
        try model.validateInput(height: size, width: size)
        var config = TrainerConfig(totalSteps: 1000)
        config.projectionHead = head
        config.dropPathRate = dropPath
        config.trainable = last > 0 ? .last(last) : .all
        let trainer = try Trainer(student: model, config: config)
        memory.apply(to: trainer)
        // A teacher equal to the student would make the loss and every gradient zero (and later
        // denormal); perturb it by ~10 % of the weight scale, as PyTorch's side does.
        if let t = trainer.teacher {
            for i in 0..<t.params.count { t.params.slab.base[i] += rng.uniform(-0.002, 0.002) }
        }
        let rssInit = peakRSSMiB()
        var pixels = [Float](repeating: 0, count: n * 3 * size * size)
        for i in 0..<pixels.count { pixels[i] = Float((i * 7919) % 1000) / 500 - 1 }

        print("train-bench: ViT-S/14 reg4, \(images) images × \(views) views = \(n) views at \(size)×\(size), "
              + "\(Threads.count) threads, head \(head ? "yes" : "no"), drop path \(dropPath), "
              + "trainable \(trainer.trainableCount) of \(trainer.backboneCount + (trainer.studentHead?.count ?? 0))")
        // Rounds alternate libneco's steps with a PyTorch process, so that both sides see similar
        // machine load; the medians over rounds are reported (the machines are shared and noisy).
        var ours: [PhaseTimes] = []
        var oursCPU: [Double] = []
        var theirs: [(line: String, values: [String: Double])] = []
        try pixels.withUnsafeBufferPointer { px in
            let input = TrainingInput(images: px.baseAddress!, batch: n, height: size, width: size, teacher: true)
            for round in 0..<rounds {
                print("round \(round + 1)/\(rounds), load average \(loadAverage())")
                var times: [PhaseTimes] = []
                var cpu: [Double] = []
                for s in 0...steps where round == 0 || s > 0 {
                    let c0 = cpuSeconds()
                    let r = try trainer.step([input], loss: DenseMSE.studentTeacherObjective)
                    if s > 0 { times.append(r.times); cpu.append(cpuSeconds() - c0) }
                    print("  libneco step \(s)\(s == 0 ? " (warm-up)" : ""): \(fmt(r.times.total, 3)) s "
                          + "(CPU \(fmt(cpuSeconds() - c0, 3)) s), loss \(r.loss)")
                }
                ours.append(times.sorted { $0.total < $1.total }[times.count / 2])
                oursCPU.append(cpu.sorted()[cpu.count / 2])
                if !noTorch, let t = runTorch() {
                    theirs.append(t)
                    print("  PyTorch: \(fmt(t.values["step_s"] ?? 0, 3)) s per step (CPU \(fmt(t.values["cpu_s"] ?? 0, 3)) s)")
                }
            }
        }
        let med = ours.sorted { $0.total < $1.total }[ours.count / 2]
        let rss = peakRSSMiB()
        let vps = Double(n) / med.total
        print("phase            libneco s\(theirs.isEmpty ? "" : "   PyTorch s")")
        let torchRound = theirs.isEmpty ? nil
            : theirs.sorted { ($0.values["step_s"] ?? 0) < ($1.values["step_s"] ?? 0) }[theirs.count / 2]
        let torchMed = torchRound?.values ?? [:]
        for (name, v, key) in [("teacher forward", med.teacherForward, "teacher_fwd_s"),
                               ("student forward", med.studentForward, "student_fwd_s"),
                               ("loss", med.loss, ""), ("backward", med.backward, "backward_s"),
                               ("clip+EMA+AdamW", med.optimizer, "optimizer_s"), ("step", med.total, "step_s")] {
            print(column(name, 17) + (torchMed[key].map { column(fmt(v, 3), 12) + fmt($0, 3) } ?? fmt(v, 3)))
        }
        let cpuMed = oursCPU.sorted()[oursCPU.count / 2]
        print(column("CPU s per step", 17) + (torchMed["cpu_s"].map { column(fmt(cpuMed, 3), 12) + fmt($0, 3) } ?? fmt(cpuMed, 3)))
        print("views/s \(fmt(vps, 3)), peak RSS \(fmt(rss, 0)) MiB (after init \(fmt(rssInit, 0)) MiB), "
              + "trainer buffers \(fmt(Double(trainer.byteCount) / 1048576, 0)) MiB, feed-forward recomputed in "
              + "\(trainer.recomputedFeedForwardBlocksInUse) blocks, load average now \(loadAverage())")
        print("NECO_TRAIN views=\(n) step_s=\(fmt(med.total, 3)) views_per_s=\(fmt(vps, 3)) "
              + "teacher_fwd_s=\(fmt(med.teacherForward, 3)) student_fwd_s=\(fmt(med.studentForward, 3)) "
              + "backward_s=\(fmt(med.backward, 3)) optimizer_s=\(fmt(med.optimizer, 3)) peak_rss_mib=\(fmt(rss, 0)) "
              + "recomputed_blocks=\(trainer.recomputedFeedForwardBlocksInUse)")
        if profile {
            Profile.reset()
            Profile.enabled = true
            var total = 0.0
            try pixels.withUnsafeBufferPointer { px in
                let input = TrainingInput(images: px.baseAddress!, batch: n, height: size, width: size, teacher: true)
                for _ in 0..<steps {
                    let t0 = monotonicSeconds()
                    _ = try trainer.step([input], loss: DenseMSE.studentTeacherObjective)
                    total += monotonicSeconds() - t0
                }
            }
            Profile.enabled = false
            print("profile (wall time per step, mean of \(steps); teacher and student forward in the forward classes):")
            // Multiply-adds per step: two forwards (teacher, student) of n views; with every part
            // trained, backward's Linear GEMMs are dX and dW of each (twice the forward's), and its
            // attention six products (the recomputed scores and heads, dV, dP, dQ, dK).
            let perView = model.flopsByKind(height: size, width: size)
            var flops = perView.mapValues { 2 * Double(n) * $0 }
            if last == 0 {
                let linear: [Profile.Kind] = [.gemmQKV, .gemmProj, .gemmFC1, .gemmFC2]
                flops[.backwardLinear] = linear.reduce(0) { $0 + 2 * Double(n) * (perView[$1] ?? 0) }
                flops[.backwardAttention] = 3 * Double(n) * (perView[.attention] ?? 0)
            }
            printProfile(total: total, runs: steps, other: "other (loss, optimizer, gaps)", flops: flops,
                         peak: CPUFeatures.measurePeakGFLOPS())
        }
        guard !noTorch else { return }
        guard let line = torchRound?.line, let tv = torchMed["views_per_s"], let trss = torchMed["peak_rss_mib"] else {
            print("PyTorch: not run (no reference environment; scripts/setup.sh --reference creates it)")
            return
        }
        print(line)
        print("PyTorch: \(fmt(tv, 3)) views/s (median of \(theirs.count) round\(theirs.count == 1 ? "" : "s")), peak RSS \(fmt(trss, 0)) MiB")
        print("ratio libneco / PyTorch: throughput \(fmt(vps / tv, 2))×, peak RSS \(fmt(rss / trss, 2))×"
              + (torchMed["cpu_s"].map { ", CPU time per step \(fmt(cpuMed / $0, 2))× (with 1 thread the CPU-time ratio is the load-independent one)" } ?? ""))
    }

    /// `--neco`: the per-phase breakdown of complete NeCo steps (ViT-S/14 reg4, random weights).
    func runNeCo() throws {
        guard images >= 2, images <= 256 else { throw NecoError.invalidArgument("--images must be in 2...256 for --neco") }
        guard steps >= 1 else { throw NecoError.invalidArgument("--steps must be ≥ 1") }
        var rng = NecoRNG(seed: 42)
        let model = try randomBenchmarkModel(config: .dinov2Small(registers: 4), rng: &rng)
        var rc = NeCoRunConfig(totalSteps: 1000)
        rc.batchSize = images
        rc.objective.crops.globalSize = size
        rc.objective.crops.localSize = localSize
        rc.trainer.dropPathRate = 0.1
        rc.trainer.trainable = last > 0 ? .last(last) : .all
        let source: TrainingImages
        if let data {
            source = .folder(try ImageFolder(root: data))
        } else {
            // Smooth colour ramps with a checker texture: decoding is skipped, cropping,
            // resizing and augmentation cost what they cost on photos of this size.
            source = .memory((0..<(2 * images)).map { k in
                let w = 320, h = 256
                var px = [UInt8](repeating: 0, count: w * h * 3)
                for y in 0..<h {
                    for x in 0..<w {
                        let o = (y * w + x) * 3
                        let checker = ((x / (8 + k)) + (y / (6 + k))) % 2 == 0 ? 40 : 0
                        px[o] = UInt8((x * 255 / w + checker) % 256)
                        px[o + 1] = UInt8((y * 255 / h + 3 * k) % 256)
                        px[o + 2] = UInt8(((x + y) * 127 / (w + h) + checker) % 256)
                    }
                }
                return RGBImage(width: w, height: h, pixels: px)
            })
        }
        let run = try NeCoRun(model: model, images: source, config: rc, directory: nil)
        memory.apply(to: run.trainer)
        run.warn = { _ in }
        let o = rc.objective.crops
        print("train-bench --neco: ViT-S/14 reg4 (random weights), batch \(images), crops \(o.globalCrops)×\(o.globalSize) + "
              + "\(o.localCrops)×\(o.localSize), queue references, bitonic/Cauchy, heads 384→2048→2048→256, drop path 0.1, "
              + "\(Threads.count) threads, data \(source.description), load average \(loadAverage())")
        var infos: [NeCoStepInfo] = []
        for s in 0...steps {
            let i = try run.step()
            if s > 0 { infos.append(i) }
            print("  step \(s)\(s == 0 ? " (warm-up)" : ""): \(fmt(i.stepSeconds, 3)) s, loss \(i.loss)")
        }
        let m = infos.sorted { $0.stepSeconds < $1.stepSeconds }[infos.count / 2]
        let t = m.times
        let total = m.stepSeconds
        func row(_ name: String, _ v: Double) {
            let pct = fmt(100 * v / total, 1)
            print(name + String(repeating: " ", count: max(1, 34 - name.count)) + fmt(v, 3)
                  + String(repeating: " ", count: max(1, 9 - fmt(v, 3).count)) + String(repeating: " ", count: max(0, 5 - pct.count)) + pct + " %")
        }
        print("phase (median step of \(infos.count))        seconds    share")
        row("data (decode, crops, augment)", m.dataSeconds)
        row("teacher forward + head", t.teacherForward)
        row("student forward + head", t.studentForward)
        row("NeCo objective", t.loss)
        row("  queue update", m.queueSeconds)
        row("  ROI Align, sort, loss (fwd+bwd)", m.pairSeconds)
        row("backward", t.backward)
        row("EMA + AdamW", t.optimizer)
        row("step", total)
        let views = images * o.crops
        print("NeCo step: \(fmt(Double(images) / total, 3)) images/s (\(fmt(Double(views) / total, 2)) views/s), "
              + "sorting + ROI Align + loss \(fmt(100 * t.loss / total, 1)) % of the step, peak RSS \(fmt(peakRSSMiB(), 0)) MiB, "
              + "load average now \(loadAverage())")
        print("NECO_STEP images=\(images) step_s=\(fmt(total, 3)) images_per_s=\(fmt(Double(images) / total, 3)) "
              + "data_s=\(fmt(m.dataSeconds, 3)) teacher_fwd_s=\(fmt(t.teacherForward, 3)) student_fwd_s=\(fmt(t.studentForward, 3)) "
              + "neco_loss_s=\(fmt(t.loss, 3)) backward_s=\(fmt(t.backward, 3)) optimizer_s=\(fmt(t.optimizer, 3)) "
              + "neco_share=\(fmt(t.loss / total, 4)) peak_rss_mib=\(fmt(peakRSSMiB(), 0)) "
              + "recomputed_blocks=\(run.trainer.recomputedFeedForwardBlocksInUse)")
    }

    /// User + system CPU seconds of this process so far.
    func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) * 1e-6
            + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) * 1e-6
    }

    /// The 1, 5 and 15-minute load averages, for the record.
    func loadAverage() -> String {
        var l = [Double](repeating: 0, count: 3)
        guard getloadavg(&l, 3) == 3 else { return "?" }
        return l.map { fmt($0, 2) }.joined(separator: " ")
    }

    /// Runs scripts/bench_train_torch.py with the reference venv; nil when it is not installed.
    func runTorch() -> (line: String, values: [String: Double])? {
        let home = getenv("HOME").map { String(cString: $0) } ?? "/root"
        let venv = getenv("NECO_REF_VENV").map { String(cString: $0) } ?? home + "/.cache/neco-ref"
        let python = venv + "/bin/python"
        guard access(python, X_OK) == 0 else { return nil }
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Sources/neco/TrainBench.swift
        let script = parts.joined(separator: "/") + "/scripts/bench_train_torch.py"
        guard access(script, R_OK) == 0 else { return nil }
        var cmd = "'\(python)' '\(script)' --threads \(Threads.count) --images \(images) --views \(views) --size \(size) --steps \(steps)"
        if head { cmd += " --head" }
        if last > 0 { cmd += " --last \(last)" }
        guard let pipe = popen(cmd + " 2>/dev/null", "r") else { return nil }
        var found: String?
        var buf = [CChar](repeating: 0, count: 4096)
        while fgets(&buf, Int32(buf.count), pipe) != nil {
            let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            let line = String(decoding: bytes, as: UTF8.self).trimmingSuffix()
            if line.hasPrefix("TORCH_TRAIN") { found = line }
        }
        pclose(pipe)
        guard let line = found else { return nil }
        var values: [String: Double] = [:]
        for token in line.split(separator: " ") {
            let kv = token.split(separator: "=")
            if kv.count == 2, let v = Double(kv[1]) { values[String(kv[0])] = v }
        }
        return (line, values)
    }
}

private extension String {
    func trimmingSuffix() -> String {
        var s = self
        while let last = s.last, last == "\n" || last == "\r" { s.removeLast() }
        return s
    }
}
