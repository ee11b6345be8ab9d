# nn serve: the HTTP server links libmicrohttpd, and its pages are compiled
# in as byte arrays generated from app/serve/page.html (an image classifier's)
# and app/serve/text_page.html (a language model's), with od and sed only,
# so the pages need no build step of their own and no file at run time.
APP_LIBS += $(shell pkg-config --libs libmicrohttpd)
APP_GEN_SRC += $(BUILD)/gen/serve_page.c $(BUILD)/gen/serve_text_page.c

# $(call serve_page_c,SYMBOL): the C source of the array SYMBOL from $<.
serve_page_c = { echo '/* Generated from $< by app/serve/module.mk: do not edit. */'; \
	  echo '\#include <stddef.h>'; \
	  echo 'const unsigned char $(1)[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t $(1)_len = sizeof $(1);'; } > $@.tmp

$(BUILD)/gen/serve_page.c: app/serve/page.html app/serve/module.mk
	@mkdir -p $(@D)
	$(say) GEN $@
	$(Q)$(call serve_page_c,serve_page)
	$(Q)mv $@.tmp $@

$(BUILD)/gen/serve_text_page.c: app/serve/text_page.html app/serve/module.mk
	@mkdir -p $(@D)
	$(say) GEN $@
	$(Q)$(call serve_page_c,serve_text_page)
	$(Q)mv $@.tmp $@

$(BUILD)/gen/serve_page.o $(BUILD)/gen/serve_text_page.o: %.o: %.c $(FLAGS_STAMP)
	$(say) CC $<
	$(Q)$(COMPILE)
