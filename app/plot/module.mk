# app/plot: line plots and image grids through PLplot (its cairo drivers).
# PLplot's include folder holds a header named nn.h: it is given to these
# objects only, after ours.
PLPLOT_CFLAGS := $(shell pkg-config --cflags plplot 2>/dev/null)
$(BUILD)/app/plot/%.o: MOD_INC = $(PLPLOT_CFLAGS)
APP_LIBS += $(shell pkg-config --libs plplot 2>/dev/null)
