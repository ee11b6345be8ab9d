# app/plot: line plots and image grids through PLplot (its cairo drivers).
# PLplot's include folder holds a header named nn.h: it is given to these
# objects only, after ours.
PLPLOT_CFLAGS := $(shell pkg-config --cflags plplot 2>/dev/null)
$(BUILD)/app/plot/%.o: MOD_INC = $(PLPLOT_CFLAGS)
APP_LIBS += $(shell pkg-config --libs plplot 2>/dev/null)

# tests/test_confusion_plot.c checks this module's confusion picture: like
# the Makefile's PROGRAM_TESTS it sees app/ headers, and it links this
# module's objects and PLplot besides libnn.
PLOT_TEST := $(BUILD)/tests/test_confusion_plot
$(PLOT_TEST).o: INC = -Iinclude -Isrc -Iapp
$(PLOT_TEST): $(PLOT_TEST).o $(patsubst %.c,$(BUILD)/%.o,$(wildcard app/plot/*.c)) $(BUILD)/libnn.a
	$(say) LD $@
	$(Q)$(CC) $(NN_LDFLAGS) $(LDFLAGS) $^ $(shell pkg-config --libs plplot 2>/dev/null) $(LIB_LIBS) $(LDLIBS) -o $@
