import ArgumentParser
import NecoCore
import NecoModel
import NecoTrain

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interpolate the weights of a model and a post-pretrained copy of it: (1 − α)·base + α·tuned.",
        discussion: "--model is the base (default: the embedded DINOv2 ViT-S/14), --tuned the trained student (a .safetensors file or a run folder). The result is a plain model file that --model accepts everywhere.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "The post-pretrained model (student.safetensors, best.safetensors or a run folder).") var tuned: String
    @Option(help: "Weight of the tuned model, 0...1.") var alpha: Double = 0.5
    @Option(help: "Output .safetensors file.") var out: String

    func run() throws {
        let base = try modelOptions.load()
        // libneco's own model files and checkpoints record their architecture.
        let other = try WeightLoader.load(path: try NeCoRun.modelFile(tuned),
                                          options: LoadOptions(heads: base.config.heads, registers: base.config.registers))
        let mixed = try WeightInterpolation.interpolate(base: base, tuned: other, alpha: alpha)
        try Checkpoint.exportModel(mixed, to: out, metadata: ["which": "interpolated", "alpha": String(alpha),
                                                             "base": base.source, "tuned": other.source])
        print("wrote \(out): \(fmt(1 - alpha, 2))·\(base.source) + \(fmt(alpha, 2))·\(other.source)")
    }
}
