#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "state.h"

/* Not IN_MODIFY: a writer's intermediate states are not worth reading, the
 * close (or the rename into place) tells that it is done. IN_CREATE only
 * counts for symbolic links (a ConfigMap volume's new key), which get no
 * other event; a new regular file is read when it is closed. */
#define SP_DFILES_MASK                                                                             \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |   \
	 IN_MOVE_SELF | IN_CREATE)

/* A read buffer larger than this (a rare big file) is not kept. */
#define BUF_KEEP (4u << 20)

struct sp_dfile {
	char *path;
	/* The last content read, good or not, as length + hash: enough to
	 * skip a re-read that changed nothing, without keeping a copy. */
	bool read_once;
	size_t len;
	uint64_t hash;
	struct sp_dstore good; /* objects of the last good content */
	bool bad;	       /* the current content was rejected */
	/* The limits changed since good was decoded: decode every object
	 * again instead of reusing good's decodings. */
	bool redecode;
};

struct sp_dsrc {
	char *path;
	char *watch_dir;  /* the directory itself, or a file's parent */
	char *parent;	  /* watch_dir's parent: watched while watch_dir is gone */
	char *watch_base; /* watch_dir's name in parent */
	char *file_base;  /* a file source's name in watch_dir; NULL for a directory */
	int wd;		  /* -1 while watch_dir is gone */
	int parent_wd;	  /* -1 unless watch_dir is gone */
	bool rescan;	  /* read the whole source again */
	bool lost;	  /* watch_dir went away or moved */
	bool back;	  /* something appeared at watch_dir's name */
	char **names;	  /* files of a directory source named by events */
	size_t n_names, cap_names;
};

struct sp_dfiles {
	int ifd;
	struct sp_source_limits lim;
	struct sp_dsrc *srcs;
	size_t n_srcs;
	struct sp_dfile *files; /* sorted by path */
	size_t n_files, cap_files;
	/* Every file is read into this one buffer: a fresh large allocation
	 * per read makes glibc consolidate the small chunks the JSON trees
	 * leave (17% of the daemon's CPU under the load test). */
	char *buf;
	size_t buf_cap;
};

static void file_clear(struct sp_dfile *f)
{
	free(f->path);
	sp_dstore_free(&f->good);
}

int sp_dfiles_fd(const struct sp_dfiles *f)
{
	return f->ifd;
}

static bool wd_used(const struct sp_dfiles *f, int wd)
{
	for (size_t i = 0; i < f->n_srcs; i++)
		if (f->srcs[i].wd == wd || f->srcs[i].parent_wd == wd)
			return true;
	return false;
}

/* Drop a watch no source uses any more. Its IN_IGNORED then matches no
 * source, so it cannot look like a reason to watch again (that would spin). */
static void unwatch(struct sp_dfiles *f, int *wd)
{
	int old = *wd;

	*wd = -1;
	if (old >= 0 && !wd_used(f, old))
		inotify_rm_watch(f->ifd, old);
}

/* Watch the source's directory (again). 0, or -1 with errno. Every watch
 * uses the same mask: a directory watched twice (two sources, or a source's
 * directory being another's parent) shares one watch descriptor, and a
 * second mask would replace the first. */
static int add_watch(struct sp_dfiles *f, struct sp_dsrc *s)
{
	int wd = inotify_add_watch(f->ifd, s->watch_dir, SP_DFILES_MASK | IN_ONLYDIR);

	if (wd < 0)
		return -1;
	if (s->wd != wd)
		unwatch(f, &s->wd);
	s->wd = wd;
	if (s->parent_wd >= 0)
		unwatch(f, &s->parent_wd);
	return 0;
}

/* The source's directory is gone: keep its files' last good objects and
 * watch its parent for a directory of the same name. */
static void watch_parent(struct sp_dfiles *f, struct sp_dsrc *s, struct sp_diag *diag)
{
	unwatch(f, &s->wd);
	if (s->parent_wd < 0) {
		s->parent_wd = inotify_add_watch(f->ifd, s->parent, SP_DFILES_MASK | IN_ONLYDIR);
		if (s->parent_wd < 0) {
			sp_diag_error(diag,
				      "%s: gone, and so is %s (%s); keeping its last good content "
				      "until SIGHUP",
				      s->watch_dir, s->parent, strerror(errno));
			return;
		}
		sp_diag_warn(diag, "%s: gone; keeping its last good content until it is back",
			     s->watch_dir);
	}
	/* It may have come back before the parent was watched. */
	if (add_watch(f, s) == 0)
		s->rescan = true;
}

static void rewatch(struct sp_dfiles *f, struct sp_dsrc *s, struct sp_diag *diag)
{
	if (add_watch(f, s) < 0)
		watch_parent(f, s, diag);
}

struct sp_dfiles *sp_dfiles_open(const char *const *paths, size_t n,
				 const struct sp_source_limits *lim, struct sp_diag *diag)
{
	struct sp_dfiles *f = sp_xcalloc(1, sizeof(*f));
	struct sp_dchanges ch = {0};
	size_t n_bad = 0;

	f->lim = *lim;
	f->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (f->ifd < 0) {
		sp_diag_error(diag, "inotify: %s", strerror(errno));
		free(f);
		return NULL;
	}
	f->srcs = sp_xcalloc(n + 1, sizeof(*f->srcs));
	for (size_t i = 0; i < n; i++) {
		struct sp_dsrc *s = &f->srcs[f->n_srcs++];
		struct stat st;
		char *copy;

		s->path = sp_xstrdup(paths[i]);
		s->wd = s->parent_wd = -1;
		if (stat(paths[i], &st) < 0) {
			sp_diag_error(diag, "%s: %s", paths[i], strerror(errno));
			sp_dfiles_close(f);
			return NULL;
		}
		if (S_ISDIR(st.st_mode)) {
			s->watch_dir = sp_xstrdup(paths[i]);
		} else {
			copy = sp_xstrdup(paths[i]);
			s->watch_dir = sp_xstrdup(dirname(copy));
			free(copy);
			copy = sp_xstrdup(paths[i]);
			s->file_base = sp_xstrdup(basename(copy));
			free(copy);
		}
		copy = sp_xstrdup(s->watch_dir);
		s->parent = sp_xstrdup(dirname(copy));
		free(copy);
		copy = sp_xstrdup(s->watch_dir);
		s->watch_base = sp_xstrdup(basename(copy));
		free(copy);
		if (add_watch(f, s) < 0) {
			sp_diag_error(diag, "%s: cannot watch: %s", s->watch_dir, strerror(errno));
			sp_dfiles_close(f);
			return NULL;
		}
	}
	sp_dfiles_update(f, true, &ch, &n_bad, diag);
	return f;
}

static void src_clear_names(struct sp_dsrc *s)
{
	for (size_t i = 0; i < s->n_names; i++)
		free(s->names[i]);
	s->n_names = 0;
}

void sp_dfiles_close(struct sp_dfiles *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_srcs; i++) {
		struct sp_dsrc *s = &f->srcs[i];

		src_clear_names(s);
		free(s->names);
		free(s->path);
		free(s->watch_dir);
		free(s->parent);
		free(s->watch_base);
		free(s->file_base);
	}
	free(f->srcs);
	for (size_t i = 0; i < f->n_files; i++)
		file_clear(&f->files[i]);
	free(f->files);
	free(f->buf);
	if (f->ifd >= 0)
		close(f->ifd);
	free(f);
}

void sp_dfiles_set_limits(struct sp_dfiles *f, const struct sp_source_limits *lim)
{
	if (!memcmp(&f->lim, lim, sizeof(*lim)))
		return;
	f->lim = *lim;
	for (size_t i = 0; i < f->n_files; i++) {
		f->files[i].read_once = false;
		f->files[i].redecode = true;
	}
}

/* Index of path in f->files, or where it would go (*found false). */
static size_t file_find(const struct sp_dfiles *f, const char *path, bool *found)
{
	return sp_sorted_find_str(f->files, f->n_files, sizeof(*f->files),
				  offsetof(struct sp_dfile, path), path, found);
}

static struct sp_dfile *file_get(struct sp_dfiles *f, const char *path)
{
	bool found;
	size_t at = file_find(f, path, &found);

	if (found)
		return &f->files[at];
	sp_array_push(&f->files, &f->n_files, &f->cap_files, sizeof(*f->files));
	memmove(&f->files[at + 1], &f->files[at], (f->n_files - 1 - at) * sizeof(*f->files));
	memset(&f->files[at], 0, sizeof(*f->files));
	f->files[at].path = sp_xstrdup(path);
	sp_dstore_init(&f->files[at].good, f->files[at].path, &f->lim);
	return &f->files[at];
}

/* The file is gone: its objects go (a deletion, timed from now). */
static bool file_drop(struct sp_dfiles *f, size_t at, struct sp_dchanges *ch)
{
	struct sp_dfile *e = &f->files[at];
	struct sp_dstore empty;
	bool changed = e->good.n > 0;

	if (ch->trig)
		ch->trig->fallback_ns = sp_dclock_ns(CLOCK_REALTIME);
	sp_dstore_init(&empty, NULL, NULL);
	sp_dstore_diff(&e->good, &empty, ch);
	file_clear(e);
	memmove(e, e + 1, (f->n_files - at - 1) * sizeof(*e));
	f->n_files--;
	return changed;
}

/* Whole file into f->buf (NUL-terminated), or NULL with *err set; *mtime_ns
 * its modification time. */
static char *slurp(struct sp_dfiles *f, const char *path, size_t *len, int64_t *mtime_ns, int *err)
{
	size_t max = f->lim.max_file_bytes;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		*err = errno;
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || (uintmax_t)st.st_size > max) {
		*err = S_ISREG(st.st_mode) ? EFBIG : EISDIR;
		close(fd);
		return NULL;
	}
	*mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (f->buf_cap < (size_t)st.st_size + 1) {
		f->buf_cap = (size_t)st.st_size + 1;
		f->buf = sp_xrealloc(f->buf, f->buf_cap);
	}
	buf = f->buf;
	for (;;) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*err = errno;
			close(fd);
			return NULL;
		}
		got += (size_t)r;
		if (r == 0 || got == (size_t)st.st_size)
			break;
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return buf;
}

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(const char *data, size_t len)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)data[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* As the reader's max_depth: containers nested in containers. */
static bool depth_ok(const cJSON *v, size_t depth, size_t max)
{
	if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
		return true;
	if (depth + 1 > max)
		return false;
	for (const cJSON *it = v->child; it; it = it->next)
		if (!depth_ok(it, depth + 1, max))
			return false;
	return true;
}

/* What makes sp_source_read_json reject a document whole before it
 * decodes any object; the objects themselves are judged by the store's
 * decoding, so that a file is decoded once. */
static bool doc_shape_ok(const cJSON *doc, const struct sp_source_limits *lim)
{
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items");

	if (!cJSON_IsObject(doc) || !depth_ok(doc, 0, lim->max_depth))
		return false;
	return !items ||
	       (cJSON_IsArray(items) && (size_t)cJSON_GetArraySize(items) <= lim->max_items);
}

/* Decode doc into next, once. False, with the reasons in diag, when the
 * reader would reject the file whole. */
static bool decode_doc(struct sp_dfiles *f, struct sp_dfile *e, cJSON *doc, struct sp_dstore *next,
		       struct sp_diag *diag)
{
	bool ok = true;

	if (!doc_shape_ok(doc, &f->lim)) {
		struct sp_cluster scratch;
		struct sp_diag check;

		/* Fails before decoding anything: only for its messages. */
		sp_cluster_init(&scratch);
		sp_diag_init(&check);
		sp_source_read_json(&scratch, e->path, doc, &f->lim, &check);
		for (size_t i = 0; i < check.n_msgs; i++)
			if (check.msgs[i].severity == SP_SEV_ERROR)
				sp_diag_error(diag, "%s; keeping its last good content",
					      check.msgs[i].text);
		sp_cluster_free(&scratch);
		sp_diag_free(&check);
		return false;
	}
	sp_dstore_add_doc_from(next, doc, e->redecode ? NULL : &e->good);
	for (size_t i = 0; i < next->n; i++) {
		const struct sp_dobj *o = &next->objs[i];

		if (o->result >= 0)
			continue;
		ok = false;
		for (size_t j = 0; j < o->diag.n_msgs; j++)
			if (o->diag.msgs[j].severity == SP_SEV_ERROR)
				sp_diag_error(diag, "%s; keeping its last good content",
					      o->diag.msgs[j].text);
	}
	return ok;
}

/* cJSON would end a string at "\u0000" and hand back a shorter name or
 * value: refused as the one-shot reader refuses it. */
static bool nul_refused(const char *path, const char *text, size_t len, struct sp_diag *diag)
{
	size_t at = sp_src_find_escaped_nul(text, len), line = 1, col = 1;

	if (at == len)
		return false;
	for (size_t i = 0; i < at; i++) {
		if (text[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	sp_diag_error(diag,
		      "%s: line %zu column %zu: a string holds \\u0000 (NUL), which no "
		      "Kubernetes name or value can hold; keeping its last good content",
		      path, line, col);
	return true;
}

/* The directory the source reads from is still there. */
static bool src_present(const struct sp_dsrc *s)
{
	struct stat st;

	return stat(s->watch_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Read one file of source s; replace its objects when the new content is
 * good. A file that is gone loses its objects, unless its whole directory
 * went (an unmounted volume, a directory moved away): then they stay. */
static bool reread(struct sp_dfiles *f, const struct sp_dsrc *s, const char *path,
		   struct sp_dchanges *ch, size_t *n_bad, struct sp_diag *diag)
{
	struct sp_dfile *e;
	struct sp_dstore next;
	struct sp_dchanges here = {.trig = ch->trig};
	size_t len = 0;
	int64_t mtime_ns = 0;
	int err = 0;
	uint64_t hash;
	const char *text = slurp(f, path, &len, &mtime_ns, &err);
	cJSON *doc;
	bool found, nul;
	size_t at;

	if (!text && err == EFBIG) {
		sp_diag_error(diag,
			      "%s: over the max_file_bytes limit of %zu bytes; keeping its last "
			      "good content",
			      path, f->lim.max_file_bytes);
		(*n_bad)++;
		return false;
	}
	if (!text) {
		at = file_find(f, path, &found);
		if ((err == ENOENT || err == ENOTDIR) && src_present(s))
			return found && file_drop(f, at, ch);
		if (found || err != ENOENT)
			sp_diag_error(diag, "%s: cannot read (%s); keeping its last good content",
				      path, strerror(err));
		return false;
	}
	e = file_get(f, path);
	hash = fnv1a(text, len);
	if (e->read_once && e->len == len && e->hash == hash)
		return false;
	e->read_once = true;
	e->len = len;
	e->hash = hash;
	nul = nul_refused(path, text, len, diag);
	doc = nul ? NULL : cJSON_ParseWithLength(text, len);
	if (f->buf_cap > BUF_KEEP) {
		free(f->buf);
		f->buf = NULL;
		f->buf_cap = 0;
	}
	if (!doc) {
		if (!nul)
			sp_diag_error(diag,
				      "%s: not valid JSON (half written?); keeping its last good "
				      "content",
				      path);
		e->bad = true;
		(*n_bad)++;
		return false;
	}
	sp_dstore_init(&next, e->path, &f->lim);
	if (!decode_doc(f, e, doc, &next, diag)) {
		if (!e->redecode)
			sp_dstore_give_back(&next, &e->good);
		sp_dstore_free(&next);
		cJSON_Delete(doc);
		e->bad = true;
		(*n_bad)++;
		return false;
	}
	cJSON_Delete(doc);
	e->bad = false;
	e->redecode = false;
	if (ch->trig) {
		int64_t now = sp_dclock_ns(CLOCK_REALTIME);

		/* A file moved into place keeps an old mtime: then the
		 * change is as old as its arrival. */
		ch->trig->fallback_ns =
			mtime_ns >= ch->trig->since_ns && mtime_ns <= now ? mtime_ns : now;
	}
	sp_dstore_diff(&e->good, &next, &here);
	sp_dstore_swap(&e->good, &next);
	sp_dstore_free(&next);
	ch->services += here.services;
	ch->slices += here.slices;
	ch->nodes += here.nodes;
	return here.services || here.slices || here.nodes;
}

/* path is dir/NAME (the files read from a directory are dir + "/" + name). */
static bool in_dir(const char *path, const char *dir)
{
	size_t len = strlen(dir);

	return !strncmp(path, dir, len) && path[len] == '/' && !strchr(path + len + 1, '/');
}

static bool wanted_name(const char *name)
{
	size_t len = strlen(name);

	/* Hidden files are editors' temporaries and ConfigMap's ..data. */
	return name[0] != '.' && len > 5 && !strcmp(name + len - 5, ".json");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read every file of the source; files no longer listed lose their objects. */
static bool scan_source(struct sp_dfiles *f, struct sp_dsrc *s, struct sp_dchanges *ch,
			size_t *n_bad, struct sp_diag *diag)
{
	bool changed = false;
	DIR *dir;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i, k;

	if (s->file_base)
		return reread(f, s, s->path, ch, n_bad, diag);
	dir = opendir(s->path);
	if (!dir) {
		/* Every file of this directory stays in force. */
		if (s->wd >= 0)
			sp_diag_error(diag, "%s: %s; keeping its last good content", s->path,
				      strerror(errno));
		return false;
	}
	while ((de = readdir(dir)))
		if (wanted_name(de->d_name))
			*(char **)sp_array_push(&names, &n, &cap, sizeof(char *)) =
				sp_xasprintf("%s/%s", s->path, de->d_name);
	closedir(dir);
	if (n) /* an empty folder leaves names NULL, which qsort may not take */
		qsort(names, n, sizeof(char *), cmp_str);
	/* Both lists are sorted: walk them together. */
	for (i = 0, k = 0; i < f->n_files;) {
		int c;

		if (!in_dir(f->files[i].path, s->path)) {
			i++;
			continue;
		}
		while (k < n && strcmp(names[k], f->files[i].path) < 0)
			k++;
		c = k < n ? strcmp(names[k], f->files[i].path) : 1;
		if (c)
			changed |= file_drop(f, i, ch);
		else
			i++;
	}
	for (i = 0; i < n; i++) {
		struct stat st;

		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
			changed |= reread(f, s, names[i], ch, n_bad, diag);
		free(names[i]);
	}
	free(names);
	return changed;
}

static bool is_link_or_dir(const char *dir, const char *name)
{
	struct stat st;
	char *path = sp_xasprintf("%s/%s", dir, name);
	bool r = lstat(path, &st) == 0 && (S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode));

	free(path);
	return r;
}

/* What an event in the source's own directory asks to read again: the
 * named file when it is one of ours, the whole source when a directory or
 * a link changed (a ConfigMap volume swaps its ..data link and leaves the
 * files' own links alone), nothing for other files (temporaries). */
static void dir_event(struct sp_dsrc *s, const struct inotify_event *ev)
{
	bool link_or_dir;

	if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
		s->lost = true;
		return;
	}
	if (!ev->len || (ev->mask & IN_ISDIR)) {
		s->rescan = true;
		return;
	}
	link_or_dir =
		(ev->mask & (IN_CREATE | IN_MOVED_TO)) && is_link_or_dir(s->watch_dir, ev->name);
	if (s->file_base) {
		/* A new regular file is read when it is closed. */
		if ((!strcmp(ev->name, s->file_base) && !(ev->mask & IN_CREATE)) || link_or_dir)
			s->rescan = true;
		return;
	}
	if (!wanted_name(ev->name)) {
		if (link_or_dir)
			s->rescan = true;
		return;
	}
	if ((ev->mask & IN_CREATE) && !link_or_dir)
		return;
	for (size_t i = 0; i < s->n_names; i++)
		if (!strcmp(s->names[i], ev->name))
			return;
	*(char **)sp_array_push(&s->names, &s->n_names, &s->cap_names, sizeof(char *)) =
		sp_xstrdup(ev->name);
}

static void drain(struct sp_dfiles *f, bool *all)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		ssize_t len = read(f->ifd, buf, sizeof(buf));

		if (len <= 0)
			return;
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				*all = true;
			for (size_t i = 0; i < f->n_srcs && ev->wd >= 0; i++) {
				struct sp_dsrc *s = &f->srcs[i];

				if (s->wd == ev->wd)
					dir_event(s, ev);
				if (s->parent_wd == ev->wd && ev->len &&
				    (ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
				    !strcmp(ev->name, s->watch_base))
					s->back = true;
			}
			p += sizeof(*ev) + ev->len;
		}
	}
}

/* Read the files an event named, each once. */
static bool read_named(struct sp_dfiles *f, struct sp_dsrc *s, struct sp_dchanges *ch,
		       size_t *n_bad, struct sp_diag *diag)
{
	bool changed = false;

	for (size_t i = 0; i < s->n_names; i++) {
		char *path = sp_xasprintf("%s/%s", s->path, s->names[i]);

		changed |= reread(f, s, path, ch, n_bad, diag);
		free(path);
	}
	src_clear_names(s);
	return changed;
}

bool sp_dfiles_update(struct sp_dfiles *f, bool all, struct sp_dchanges *ch, size_t *n_bad,
		      struct sp_diag *diag)
{
	bool changed = false;

	drain(f, &all);
	for (size_t i = 0; i < f->n_srcs; i++) {
		struct sp_dsrc *s = &f->srcs[i];

		if (s->lost) {
			/* The old watch follows the directory wherever it
			 * went: what happens there is none of ours. */
			unwatch(f, &s->wd);
			s->lost = false;
			s->back = true;
		}
		if (all || s->back) {
			s->back = false;
			s->rescan = true;
			rewatch(f, s, diag);
		}
		if (s->rescan) {
			s->rescan = false;
			src_clear_names(s);
			changed |= scan_source(f, s, ch, n_bad, diag);
		} else {
			changed |= read_named(f, s, ch, n_bad, diag);
		}
	}
	return changed;
}
int sp_dfiles_fill(const struct sp_dfiles *f, struct sp_cluster *c, struct sp_diag *diag)
{
	int worst = 0;

	for (size_t i = 0; i < f->n_files; i++) {
		int r = sp_dstore_fill(&f->files[i].good, c, diag);

		if (r < 0 || (r > worst && worst >= 0))
			worst = r;
	}
	return worst;
}
