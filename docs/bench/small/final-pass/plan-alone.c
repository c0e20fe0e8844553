/* The plan alone: mst_plan_build_crc on N declarations named as mst-bench names them,
 * dealt over R ranks, 5 times, and a qsort of the same declarations by name.
 *   mpicc -O2 -D_GNU_SOURCE -Iinclude -Isrc -o plan-alone plan-alone.c src/*.c -lcjson -lz -lisal
 *   ./plan-alone 100000 2 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mst_plan.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int cmpn(const void*a,const void*b){const mst_decl*x=*(const mst_decl*const*)a,*y=*(const mst_decl*const*)b;size_t n=x->t.name_len<y->t.name_len?x->t.name_len:y->t.name_len;int c=memcmp(x->t.name,y->t.name,n);return c?c:(x->t.name_len>y->t.name_len)-(x->t.name_len<y->t.name_len);}
int main(int argc,char**argv){
  size_t n=atoi(argv[1]); int nr=atoi(argv[2]);
  mst_decl*d=calloc(n,sizeof*d); int64_t*sh=malloc(n*sizeof*sh); char*names=malloc(n*40);
  for(size_t i=0;i<n;i++){char*nm=names+40*i;int l=snprintf(nm,40,"model.layers.%zu.weight",i);
    d[i].t.name=nm;d[i].t.name_len=l;d[i].t.dtype=MST_U8;d[i].t.ndim=1;sh[i]=256;d[i].t.shape=sh+i;d[i].rank=i%nr;d[i].local=i/nr;d[i].kind=0;}
  for(int rep=0;rep<5;rep++){
    mst_plan p; mst_err e; double t0=now();
    if(mst_plan_build_crc(&p,d,n,NULL,0,nr,0,&e)){printf("err %s\n",e.msg);return 1;}
    double t1=now();
    const mst_decl**b=malloc(n*sizeof*b); for(size_t i=0;i<n;i++)b[i]=&d[i];
    double t2=now(); qsort(b,n,sizeof*b,cmpn); double t3=now();
    printf("plan %.4f s (header %zu B); qsort alone %.4f s\n",t1-t0,p.header.len,t3-t2);
    mst_plan_free(&p); free(b);
  }
}
