// neco-bench-swift: ms/image of FeatureExtractor.extract(tensor:) (the Swift API), measured like
// examples-c/bench/bench_capi.c measures neco_extract_nchw; examples-c/bench/run.sh compares them.
//
// It also times the C entry point neco_extract_nchw in this same process, call for call
// alternating with the Swift API, so that both see the same machine load: the difference is the
// cost of what the C boundary adds (argument checks, handle lookup, copies into caller buffers).
//
// usage: neco-bench-swift MODEL [SIZE [BATCH [REPEATS [N_HEADS [N_THREADS]]]]]
// Prints the median and the minimum ms/image over REPEATS timed runs after one warm-up.
import CNecoSupport
import Neco
import NecoCAPI
import NecoCore
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + 1e-9 * Double(ts.tv_nsec)
}

/// CPU time of the calling thread (all the work runs on it with N_THREADS = 1).
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + 1e-9 * Double(ts.tv_nsec)
}

let args = CommandLine.arguments
guard args.count >= 2 else {
    print("usage: neco-bench-swift MODEL [SIZE [BATCH [REPEATS [N_HEADS [N_THREADS]]]]]")
    exit(2)
}
let size = args.count > 2 ? Int(args[2]) ?? 224 : 224
let batch = args.count > 3 ? Int(args[3]) ?? 1 : 1
let repeats = args.count > 4 ? Int(args[4]) ?? 10 : 10
let heads = args.count > 5 ? Int(args[5]) ?? 0 : 0
let threads = args.count > 6 ? Int(args[6]) ?? 0 : 0
if threads >= 1 && threads <= 256 { Threads.setCount(threads) }
do {
    let model = try WeightLoader.load(path: args[1], options: LoadOptions(heads: heads > 0 ? heads : nil))
    let extractor = FeatureExtractor(model: model)
    guard repeats >= 1, batch >= 1 else { throw NecoError.invalidArgument("repeats and batch must be >= 1") }
    var input = [Float](repeating: 0, count: batch * 3 * size * size)
    for i in 0..<input.count { input[i] = Float((i * 7919) % 1000) / 500 - 1 }
    var times: [Double] = [], cpu: [Double] = []
    var checksum = 0.0
    for r in -1..<repeats {  // r = -1: warm-up
        let t0 = now(), c0 = cpuNow()
        let f = try input.withUnsafeBufferPointer {
            try extractor.extract(tensor: $0.baseAddress!, batch: batch, height: size, width: size)
        }
        if r >= 0 { cpu.append(cpuNow() - c0); times.append(now() - t0) }
        checksum = Double(f.patches[0]) + Double(f.cls[0])
    }
    times.sort()
    cpu.sort()

    // Interleaved in-process comparison with the C entry point.
    var cParams = NecoCAPI.neco_model_default_params()
    cParams.n_heads = Int32(heads)
    var cModel: OpaquePointer? = nil
    guard args[1].withCString({ NecoCAPI.neco_model_load($0, &cParams, &cModel) }) == NECO_OK else {
        throw NecoError.io(String(cString: NecoCAPI.neco_last_error()))
    }
    defer { NecoCAPI.neco_model_free(cModel) }
    var shape = neco_feature_shape()
    _ = NecoCAPI.neco_extract_shape_nchw(cModel, Int32(size), Int32(size), nil, &shape)
    var patches = [Float](repeating: 0, count: batch * shape.patches_per_image)
    var cls = [Float](repeating: 0, count: batch * shape.cls_per_image)
    var regs = [Float](repeating: 0, count: max(1, batch * shape.registers_per_image))
    var tSwift: [Double] = [], tC: [Double] = [], cSwift: [Double] = [], cC: [Double] = []
    for r in -1..<repeats {
        let t0 = now(), c0 = cpuNow()
        _ = try input.withUnsafeBufferPointer {
            try extractor.extract(tensor: $0.baseAddress!, batch: batch, height: size, width: size)
        }
        let c1 = cpuNow(), t1 = now()
        let st = patches.withUnsafeMutableBufferPointer { pp in
            cls.withUnsafeMutableBufferPointer { cp in
                regs.withUnsafeMutableBufferPointer { rp in
                    var out = neco_feature_buffers(patches_capacity: pp.count, cls_capacity: cp.count,
                                                   registers_capacity: rp.count, patches: pp.baseAddress,
                                                   cls: cp.baseAddress, registers: rp.baseAddress)
                    return input.withUnsafeBufferPointer {
                        NecoCAPI.neco_extract_nchw(cModel, $0.baseAddress, Int32(batch), Int32(size), Int32(size), nil, &out)
                    }
                }
            }
        }
        let c2 = cpuNow(), t2 = now()
        guard st == NECO_OK else { throw NecoError(.internal, "neco_extract_nchw: \(String(cString: NecoCAPI.neco_last_error()))") }
        if r >= 0 { tSwift.append(t1 - t0); tC.append(t2 - t1); cSwift.append(c1 - c0); cC.append(c2 - c1) }
    }
    tSwift.sort()
    tC.sort()
    cSwift.sort()
    cC.sort()

    func fixed2(_ x: Double) -> String {
        let text = String(Int((x * 100).rounded()))
        return text.count > 2 ? String(text.dropLast(2)) + "." + String(text.suffix(2)) : "0." + text
    }
    let median = 1000 * times[repeats / 2] / Double(batch), best = 1000 * times[0] / Double(batch)
    let ms = { (t: [Double]) in 1000 * t[t.count / 2] / Double(batch) }, mn = { (t: [Double]) in 1000 * t[0] / Double(batch) }
    print("BENCH swift size=\(size) batch=\(batch) threads=\(Threads.count) ms_per_image=\(fixed2(median)) min_ms_per_image=\(fixed2(best)) cpu_ms_per_image=\(fixed2(ms(cpu))) cpu_min=\(fixed2(mn(cpu))) checksum=\(checksum)")
    print("INPROC swift_ms_per_image=\(fixed2(ms(tSwift))) swift_min=\(fixed2(mn(tSwift))) capi_ms_per_image=\(fixed2(ms(tC))) capi_min=\(fixed2(mn(tC))) swift_cpu=\(fixed2(ms(cSwift))) capi_cpu=\(fixed2(ms(cC)))")
} catch {
    print("error: \(error)")
    exit(1)
}
