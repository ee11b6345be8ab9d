# nn export --onnx: ONNX's protobuf schema compiled to C with protobuf-c at
# build time, from the onnx.proto that Debian's libonnx-dev installs (the plain
# one: the -ml variant adds the classical-ML operators nn never emits).
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
ONNX_GEN   := $(BUILD)/gen/onnx

APP_GEN_SRC += $(ONNX_GEN)/onnx.pb-c.c
APP_LIBS    += -lprotobuf-c

$(ONNX_PROTO):
	@echo "$@ is missing: apt-get install -y libonnx-dev protobuf-c-compiler libprotobuf-c-dev" >&2; exit 1

$(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h &: $(ONNX_PROTO)
	@mkdir -p $(@D)
	@command -v protoc-c >/dev/null || { echo "protoc-c is missing: apt-get install -y protobuf-c-compiler libprotobuf-c-dev" >&2; exit 1; }
	$(say) GEN $(ONNX_GEN)/onnx.pb-c.c
	$(Q)protoc-c --proto_path=$(dir $(ONNX_PROTO)) --c_out=$(ONNX_GEN) $(ONNX_PROTO)

$(ONNX_GEN)/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c $(FLAGS_STAMP)
	$(say) CC $<
	$(Q)$(COMPILE)

# The exporter includes the generated header: generate it before the first
# compile (order-only); afterwards the .d file tracks it like any header.
$(BUILD)/app/onnx/export.o: MOD_INC = -I$(BUILD)/gen
$(BUILD)/app/onnx/export.o: | $(ONNX_GEN)/onnx.pb-c.h
