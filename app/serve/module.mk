# nn serve: the HTTP server links libmicrohttpd, and its page is compiled in
# as a byte array generated from app/serve/page.html (od and sed only, so the
# page needs no build step of its own and no file at run time).
APP_LIBS += $(shell pkg-config --libs libmicrohttpd)
APP_GEN_SRC += $(BUILD)/gen/serve_page.c

$(BUILD)/gen/serve_page.c: app/serve/page.html app/serve/module.mk
	@mkdir -p $(@D)
	$(say) GEN $@
	$(Q){ echo '/* Generated from app/serve/page.html by app/serve/module.mk: do not edit. */'; \
	  echo '#include <stddef.h>'; \
	  echo 'const unsigned char serve_page[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t serve_page_len = sizeof serve_page;'; } > $@.tmp
	$(Q)mv $@.tmp $@

$(BUILD)/gen/serve_page.o: $(BUILD)/gen/serve_page.c $(FLAGS_STAMP)
	$(say) CC $<
	$(Q)$(COMPILE)
