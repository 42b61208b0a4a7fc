"""python -m benchmarks ENTRY [options] — entries: classification, export, compress, cache, strategies,
detection, segmentation, style, recipes, threshold, switch_probe, coco_eval, viewing."""
import sys

ENTRIES = {"classification": "benchmarks.classification", "export": "benchmarks.export", "compress": "benchmarks.compress",
           "cache": "benchmarks.cache",
           "strategies": "benchmarks.strategies", "recipes": "benchmarks.recipes", "threshold": "benchmarks.threshold",
           "detection": "benchmarks.detection",
           "segmentation": "benchmarks.segmentation",
           "style": "benchmarks.style", "switch_probe": "benchmarks.switch_probe",
           "coco_eval": "benchmarks.coco_eval", "viewing": "benchmarks.viewing"}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ENTRIES:
        sys.exit(f"usage: python -m benchmarks {{{','.join(ENTRIES)}}} [options]")
    import importlib

    entry = sys.argv.pop(1)
    importlib.import_module(ENTRIES[entry]).main()
