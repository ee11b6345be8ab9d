/* nn export: a checkpoint as an ONNX file, to run the model in other runtimes. */
#include <stdio.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/model.h"
#include "onnx/export.h"

static const char *const usage_text =
    "usage: nn export --model FILE.safetensors --onnx OUT.onnx\n"
    "\n"
    "Writes the model as an ONNX graph (opset 17) that ONNX runtimes can run:\n"
    "input 'image', float32 [N, 1, 28, 28] of raw pixels in [0, 1] (the model's\n"
    "input normalisation is part of the graph), output 'logits', [N, classes].\n"
    "A text model takes 'tokens', int64 ids [N, T] (all of a batch T long), and\n"
    "gives [N, classes] or, scoring every position, [N, T, classes].\n"
    "Layers run as in evaluation mode: BatchNorm with its running statistics,\n"
    "dropout left out. docs/onnx.md lists the operator each layer becomes.\n"
    "\n";

int cmd_export(int argc, char **argv) {
    const char *model_path = NULL, *onnx_path = NULL;
    flag table[] = {
        {"model", FLAG_STRING, &model_path, .metavar = "FILE", .def = "required", .help = "the checkpoint"},
        {"onnx", FLAG_STRING, &onnx_path, .metavar = "FILE", .def = "required",
         .help = "the ONNX file to write; replaced atomically"},
        FLAG_END,
    };
    int status = flags_parse("export", table, argc, argv, usage_text, NULL, NULL);
    if (status >= 0) return status;
    if (!model_path) return usage_error("export", "--model FILE is required");
    if (!onnx_path) return usage_error("export", "--onnx OUT.onnx is required (the only format so far)");
    if (!*onnx_path) return usage_error("export", "--onnx: the file name is empty");

    nn_model model;
    if (nn_model_load(&model, model_path) != 0) return runtime_error();
    onnx_export_info info;
    int rc = onnx_export(&model, onnx_path, &info);
    nn_model_free(&model);
    if (rc != 0) return runtime_error();
    printf("%s: ONNX opset %ld (IR version %ld), %d nodes, %d initializers, %zu bytes\n", onnx_path, info.opset,
           info.ir_version, info.nodes, info.initializers, info.bytes);
    return 0;
}
